/**
 * `.dockerignore` as Docker's patternmatcher reads it: one pattern a line,
 * `#` comments, `!` re-includes, `**` spans any number of directories, `*` and
 * `?` stay inside one path component, a leading `/` is dropped, and a pattern
 * that matches a directory matches everything below it. The last matching
 * pattern decides.
 */

interface Pattern {
  regex: RegExp;
  exclusion: boolean;
}

function cleanPattern(p: string): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

/** A pattern's regular expression, as patternmatcher builds it. */
export function patternRegex(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?'; // "**/" also matches no directory at all
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else re += escapeRe(c);
  }
  return new RegExp(`${re}$`);
}

function escapeRe(c: string): string {
  return /[.+^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

export class DockerIgnore {
  private readonly patterns: Pattern[];

  constructor(text: string) {
    this.patterns = [];
    for (let line of text.split(/\r?\n/)) {
      line = line.trim();
      if (!line || line.startsWith('#')) continue;
      const exclusion = line.startsWith('!');
      const p = cleanPattern((exclusion ? line.slice(1) : line).trim());
      if (!p) continue;
      this.patterns.push({ regex: patternRegex(p), exclusion });
    }
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether any pattern is an exception (a directory may then not be skipped wholesale). */
  get hasExceptions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  /** Whether PATH (relative to the context, `/`-separated) is ignored: it or one of its parents matches. */
  ignores(path: string): boolean {
    const rel = cleanPattern(path);
    const parents: string[] = [];
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) parents.push(parts.slice(0, i).join('/'));
    let ignored = false;
    for (const p of this.patterns) {
      if (p.exclusion !== ignored) continue; // cannot change the verdict
      if (p.regex.test(rel) || parents.some((d) => p.regex.test(d))) ignored = !p.exclusion;
    }
    return ignored;
  }
}
