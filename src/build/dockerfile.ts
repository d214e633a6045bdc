/**
 * The Dockerfile's syntax as Docker's parser reads it (moby's
 * frontend/dockerfile/parser): parser directives at the top (`# escape=`),
 * comment lines, line continuations with the escape character (comments and
 * blank lines inside a continuation are dropped), one instruction per logical
 * line with its `--flags` and the line number it started on. What the
 * arguments mean is the builder's business (instructions.ts).
 */
import { invalid } from '../common/errors.js';

export interface Instruction {
  /** Upper-case keyword (RUN, COPY, ...). */
  cmd: string;
  /** `--name=value` flags in front of the arguments (FROM, COPY, ADD, RUN, HEALTHCHECK). */
  flags: Record<string, string>;
  /** The arguments after the flags, continuations joined. */
  args: string;
  /** 1-based line the instruction starts on. */
  line: number;
  /** The logical line as written (continuations joined), for messages and history. */
  original: string;
}

export interface Dockerfile {
  escape: string;
  instructions: Instruction[];
}

const FLAGGED = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'HEALTHCHECK']);
const KNOWN = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL']);

/** A Dockerfile line error, worded as Docker's ("Dockerfile parse error on line 3: ..."). */
export function lineError(line: number, message: string): Error {
  return invalid(`Dockerfile parse error on line ${line}: ${message}`);
}

/** Reads the parser directives (`# escape=\``, `# syntax=...`) at the very top. */
function directives(lines: string[]): { escape: string; consumed: number } {
  let escape = '\\';
  let i = 0;
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = /^\s*#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/.exec(lines[i]!);
    if (!m) break;
    const key = m[1]!.toLowerCase();
    if (seen.has(key)) throw lineError(i + 1, `only one ${key} parser directive can be used`);
    seen.add(key);
    if (key === 'escape') {
      if (m[2] !== '\\' && m[2] !== '`') throw lineError(i + 1, `invalid escape token '${m[2]}' does not match ` + '` or \\');
      escape = m[2]!;
    }
  }
  return { escape, consumed: i };
}

/** Splits leading `--name=value` (or `--name`) flags off an instruction's arguments. */
export function splitFlags(rest: string): { flags: Record<string, string>; args: string } {
  const flags: Record<string, string> = {};
  let s = rest;
  for (;;) {
    const m = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?(?:\s+|$)/.exec(s);
    if (!m) break;
    flags[m[1]!] = m[2] ?? 'true';
    s = s.slice(m[0].length);
  }
  return { flags, args: s };
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const { escape, consumed } = directives(lines);
  const continuation = new RegExp(`${escape === '\\' ? '\\\\' : escape}\\s*$`);
  const instructions: Instruction[] = [];
  let current: { start: number; text: string } | undefined;
  for (let i = consumed; i < lines.length; i++) {
    const raw = lines[i]!;
    if (/^\s*#/.test(raw)) continue; // comments, also inside a continuation
    if (!current && raw.trim() === '') continue;
    if (current && raw.trim() === '') continue; // Docker drops empty continuation lines
    const continues = continuation.test(raw);
    const piece = continues ? raw.replace(continuation, '') : raw;
    if (!current) current = { start: i + 1, text: piece.replace(/^\s+/, '') };
    else current.text += piece;
    if (!continues) {
      instructions.push(toInstruction(current.text, current.start));
      current = undefined;
    }
  }
  if (current && current.text.trim()) instructions.push(toInstruction(current.text, current.start));
  if (!instructions.length) throw invalid('the Dockerfile (Dockerfile) cannot be empty');
  return { escape, instructions };
}

function toInstruction(text: string, line: number): Instruction {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text.trim());
  const cmd = (m?.[1] ?? '').toUpperCase();
  if (!KNOWN.has(cmd)) throw lineError(line, `unknown instruction: ${m?.[1] ?? text}`);
  const rest = (m?.[2] ?? '').trim();
  const { flags, args } = FLAGGED.has(cmd) ? splitFlags(rest) : { flags: {}, args: rest };
  return { cmd, flags, args, line, original: text.trim() };
}

/** The JSON (exec) form of an argument string, or undefined if it is not a JSON array of strings. */
export function jsonForm(args: string): string[] | undefined {
  const t = args.trim();
  if (!t.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // not JSON: the shell form, as Docker falls back to
  }
  return undefined;
}
