/**
 * Docker's variable substitution in Dockerfile arguments (moby's shell lexer):
 * `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
 * `${VAR+alt}`, `${VAR:?message}`; single quotes keep everything literal,
 * double quotes still expand; the escape character makes the next one literal.
 * Quotes are removed, as Docker does. `words` also splits on unquoted blanks.
 */
import { invalid } from '../common/errors.js';

export type Env = ReadonlyMap<string, string>;

/** KEY=VALUE lines as a lookup map (later entries win). */
export function envMap(...lists: Array<readonly string[] | undefined | null>): Map<string, string> {
  const m = new Map<string, string>();
  for (const list of lists) for (const e of list ?? []) {
    const i = e.indexOf('=');
    m.set(i < 0 ? e : e.slice(0, i), i < 0 ? '' : e.slice(i + 1));
  }
  return m;
}

class Lexer {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly env: Env,
    private readonly escape: string,
  ) {}

  /** Words of the input; quoted empty strings count, unquoted empty ones vanish. */
  run(split: boolean): string[] {
    const words: string[] = [];
    let word = '';
    let quoted = false;
    const flush = () => {
      if (word !== '' || quoted) words.push(word);
      word = '';
      quoted = false;
    };
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (split && /\s/.test(c)) {
        flush();
        this.i++;
      } else if (c === this.escape) {
        this.i++;
        if (this.i < this.s.length) word += this.s[this.i++];
        else word += c;
      } else if (c === "'") {
        quoted = true;
        const end = this.s.indexOf("'", this.i + 1);
        if (end < 0) throw invalid(`unexpected end of statement while looking for matching single-quote`);
        word += this.s.slice(this.i + 1, end);
        this.i = end + 1;
      } else if (c === '"') {
        quoted = true;
        word += this.doubleQuoted();
      } else if (c === '$') {
        // An unquoted expansion is split into words too, as Docker splits it.
        for (const ch of this.variable()) {
          if (split && /\s/.test(ch)) flush();
          else word += ch;
        }
      } else {
        word += c;
        this.i++;
      }
    }
    flush();
    return words;
  }

  private doubleQuoted(): string {
    let out = '';
    this.i++; // opening quote
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === '$') out += this.variable();
      else if (c === this.escape && ['"', '$', this.escape].includes(this.s[this.i + 1] ?? '')) {
        out += this.s[this.i + 1];
        this.i += 2;
      } else {
        out += c;
        this.i++;
      }
    }
    throw invalid('unexpected end of statement while looking for matching double-quote');
  }

  private variable(): string {
    this.i++; // '$'
    const rest = this.s.slice(this.i);
    const simple = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9]/.exec(rest);
    if (simple) {
      this.i += simple[0].length;
      return this.env.get(simple[0]) ?? '';
    }
    if (!rest.startsWith('{')) return '$';
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])|(\}))/.exec(rest);
    if (!m) throw invalid(`missing ':' or '}' in substitution: \${${rest.slice(1)}`);
    const name = m[1]!;
    this.i += m[0].length;
    const value = this.env.get(name);
    if (m[3]) return value ?? '';
    const op = m[2]!;
    const wordText = this.braced();
    const word = new Lexer(wordText, this.env, this.escape).run(false).join('');
    const set = op.startsWith(':') ? value !== undefined && value !== '' : value !== undefined;
    switch (op.replace(':', '')) {
      case '-':
        return set ? value! : word;
      case '+':
        return set ? word : '';
      default:
        if (!set) throw invalid(`${name}: ${word || 'is not allowed to be unset'}`);
        return value!;
    }
  }

  /** The text up to the matching `}` (nested braces counted). */
  private braced(): string {
    let depth = 1;
    const start = this.i;
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === this.escape) this.i++;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        this.i++;
        return this.s.slice(start, this.i - 1);
      }
      this.i++;
    }
    throw invalid("missing '}' in substitution");
  }
}

/** One word, variables expanded and quotes removed (no splitting). */
export function expandWord(s: string, env: Env, escape = '\\'): string {
  return new Lexer(s, env, escape).run(false).join('');
}

/** Words split on unquoted blanks, each expanded and unquoted. */
export function expandWords(s: string, env: Env, escape = '\\'): string[] {
  return new Lexer(s, env, escape).run(true);
}

/**
 * KEY=VALUE pairs of ENV, LABEL and ARG (values expanded and unquoted), or the
 * legacy `ENV KEY VALUE` form (one pair, the rest of the line as the value).
 * With `allowBare` (ARG), a word without `=` is a name without a value.
 */
export function keyValues(s: string, env: Env, escape = '\\', opts: { legacy?: boolean; allowBare?: boolean } = {}): Array<[string, string | undefined]> {
  const words = splitKeepingQuotes(s, escape);
  if (opts.legacy && words.length && !words[0]!.includes('=')) {
    const name = words[0]!;
    const value = s.trim().slice(name.length).trim();
    if (!value) throw invalid(`ENV names can not be blank`);
    return [[name, expandWord(value, env, escape)]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) {
      if (opts.allowBare) return [w, undefined];
      throw invalid(`Syntax error - can't find = in "${w}". Must be of the form: name=value`);
    }
    if (eq === 0) throw invalid(`Syntax error - can't find a name in "${w}"`);
    return [expandWord(w.slice(0, eq), env, escape), expandWord(w.slice(eq + 1), env, escape)];
  });
}

/** Splits on unquoted blanks but keeps the quotes and escapes (they are processed per value). */
export function splitKeepingQuotes(s: string, escape = '\\'): string[] {
  const out: string[] = [];
  let word = '';
  let quote = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === escape && i + 1 < s.length) {
      word += c + s[++i];
      continue;
    }
    if (quote) {
      if (c === quote) quote = '';
      word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word += c;
    } else if (/\s/.test(c)) {
      if (word) out.push(word);
      word = '';
    } else word += c;
  }
  if (quote) throw invalid(`unexpected end of statement while looking for matching ${quote === '"' ? 'double' : 'single'}-quote`);
  if (word) out.push(word);
  return out;
}
