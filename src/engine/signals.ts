import os from 'node:os';
import { invalid } from '../common/errors.js';

/** Parses "TERM", "SIGTERM", "15", "sigkill" into a signal number. */
export function parseSignal(value: string | number | undefined, fallback = 'SIGKILL'): number {
  const v = String(value ?? fallback).trim();
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = (v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`) as keyof typeof os.constants.signals;
    const n = os.constants.signals[name];
    if (n !== undefined) return n;
  }
  throw invalid(`invalid signal: ${value}`);
}
