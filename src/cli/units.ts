import { ExitError } from './exit-error.js';

/** Docker's RAMInBytes: "512", "64m", "1.5g", "100k" (binary units). */
export function parseBytes(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim());
  if (!m) throw new ExitError(125, `invalid argument "${v}" for "${flag}" flag: invalid size: '${v}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

export function parseCpus(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new ExitError(125, `invalid argument "${v}" for "--cpus" flag: failed to parse ${v} as a rational number`);
  return Math.round(n * 1e9);
}
