/**
 * Docker's detach keys: a key sequence on an attached stdin ("ctrl-p,ctrl-q"
 * by default, or the attach's `detachKeys` / an exec's `DetachKeys`) that
 * detaches the client, leaving the container running and its stdin open. The
 * sequence itself never reaches the container; a partial match is passed on as
 * soon as it breaks.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { invalid } from '../../common/errors.js';

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/** The bytes of a detach-keys spec ("ctrl-p,ctrl-q", "ctrl-x", "a,ctrl-@"), as dockerd's term.ToBytes reads it. */
export function parseDetachKeys(spec: string): Buffer {
  const out: number[] = [];
  for (const key of spec.split(',').map((k) => k.trim())) {
    if (key.length === 1) {
      out.push(key.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-([a-z@[\\\]^_])$/i.exec(key);
    if (!m) throw invalid(`Invalid detach keys (${spec}) provided: unknown character: '${key}'`);
    const c = m[1]!.toLowerCase();
    // ctrl-a..ctrl-z are 1..26; ctrl-@ is 0, and ctrl-[ \\ ] ^ _ are 27..31.
    out.push(c >= 'a' && c <= 'z' ? c.charCodeAt(0) - 96 : c === '@' ? 0 : 27 + '[\\]^_'.indexOf(c));
  }
  if (!out.length) throw invalid('Invalid detach keys () provided');
  return Buffer.from(out);
}

/**
 * INPUT with the sequence KEYS cut out: when it is typed, ON_DETACH runs and
 * nothing more is passed on (the returned stream does not end: the container's
 * stdin stays open, as on Docker).
 */
export function watchDetachKeys(input: Readable, keys: Buffer, onDetach: () => void): Readable {
  let matched = 0;
  let detached = false;
  const filter = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (detached) return done();
      const out: number[] = [];
      for (const byte of chunk) {
        if (byte === keys[matched]) {
          matched++;
          if (matched === keys.length) {
            detached = true;
            if (out.length) this.push(Buffer.from(out));
            onDetach();
            return done();
          }
          continue;
        }
        // The held bytes were not the sequence after all: they go on, and this byte may start it again.
        for (let i = 0; i < matched; i++) out.push(keys[i]!);
        matched = byte === keys[0] ? 1 : 0;
        if (!matched) out.push(byte);
      }
      done(null, out.length ? Buffer.from(out) : undefined);
    },
    flush(done: TransformCallback) {
      if (detached) return; // never ends: see above
      done(null, matched ? keys.subarray(0, matched) : undefined);
    },
  });
  return input.pipe(filter);
}
