/**
 * The build context: the client's tar (plain or gzip'd) unpacked into a
 * private temporary directory with the image layer extractor (images/layer.ts:
 * `..` refused, absolute names confined, nothing written through a symlink,
 * sizes bounded), `.dockerignore`d paths removed, and every path the
 * Dockerfile names resolved inside it as if the context were `/`, so no
 * symlink or `..` in the context can make the builder read a host file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { invalid } from '../common/errors.js';
import { applyLayer, maybeDecompress } from '../images/layer.js';
import { DockerIgnore } from './dockerignore.js';

/** A context larger than this (file data) is refused. */
export const MAX_CONTEXT_BYTES = 8 * 1024 ** 3;
const MAX_SYMLINK_HOPS = 40;

export class BuildContext {
  private constructor(readonly dir: string) {}

  /** Unpacks a context tar stream into a fresh private directory. */
  static async unpack(source: Readable, tmpRoot = os.tmpdir(), maxBytes = MAX_CONTEXT_BYTES): Promise<BuildContext> {
    const dir = fs.mkdtempSync(path.join(tmpRoot, 'hyperbox-build-'));
    fs.chmodSync(dir, 0o700);
    const ctx = new BuildContext(path.join(dir, 'context'));
    fs.mkdirSync(ctx.dir, { mode: 0o755 });
    try {
      await applyLayer(ctx.dir, endedTar(await maybeDecompress(source)), { whiteouts: false, maxBytes });
    } catch (err) {
      ctx.dispose();
      throw invalid(`cannot read the build context: ${(err as Error).message}`);
    }
    return ctx;
  }

  dispose(): void {
    fs.rmSync(path.dirname(this.dir), { recursive: true, force: true });
  }

  /** The host path of context path REL (symlinks followed inside the context), or undefined. */
  resolve(rel: string): string | undefined {
    return resolveConfined(this.dir, rel);
  }

  /** The Dockerfile's text (its path relative to the context; absolute ones are confined too). */
  readDockerfile(name: string): string {
    const p = this.resolve(name);
    const st = p ? fs.statSync(p) : undefined;
    if (!p || !st?.isFile()) throw invalid(`Cannot locate specified Dockerfile: ${name}`);
    if (st.size > 16 * 1024 * 1024) throw invalid(`the Dockerfile ${name} is too large (${st.size} bytes)`);
    return fs.readFileSync(p, 'utf8');
  }

  /** Removes what `.dockerignore` excludes (the Dockerfile and .dockerignore stay readable first). */
  applyDockerignore(): void {
    const p = this.resolve('.dockerignore');
    if (!p || !fs.statSync(p).isFile()) return;
    const ignore = new DockerIgnore(fs.readFileSync(p, 'utf8'));
    if (ignore.empty) return;
    const walk = (rel: string) => {
      for (const name of fs.readdirSync(path.join(this.dir, rel))) {
        const r = rel ? `${rel}/${name}` : name;
        const host = path.join(this.dir, r);
        const isDir = fs.lstatSync(host).isDirectory();
        if (ignore.ignores(r)) {
          // With exceptions, a re-included path may sit below an ignored directory.
          if (isDir && ignore.hasExceptions) walk(r);
          else fs.rmSync(host, { recursive: true, force: true });
        } else if (isDir) walk(r);
      }
    };
    walk('');
  }
}

/**
 * The host path of REL under ROOT, every symlink (the last component's too)
 * followed as if ROOT were `/`; undefined if it does not exist.
 */
export function resolveConfined(root: string, rel: string): string | undefined {
  const queue = splitPath(rel);
  const stack: string[] = [];
  let hops = 0;
  while (queue.length) {
    const part = queue.shift()!;
    if (part === '..') {
      stack.pop();
      continue;
    }
    const candidate = path.join(root, ...stack, part);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(candidate);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) throw invalid(`too many levels of symbolic links in ${rel}`);
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) stack.length = 0;
      queue.unshift(...splitPath(target));
      continue;
    }
    if (queue.length && !st.isDirectory()) return undefined;
    stack.push(part);
  }
  return path.join(root, ...stack);
}

/**
 * The tar stream, its last block padded and two zero blocks added: the docker
 * CLI's `build -f -` context (its tar rewritten to add the Dockerfile) ends
 * right after its last file's data, which Go's tar reader (dockerd's) takes as
 * the end of the archive. A complete archive only gets more zero blocks.
 */
function endedTar(tar: Readable): Readable {
  return Readable.from(
    (async function* () {
      let n = 0;
      for await (const chunk of tar as AsyncIterable<Buffer>) {
        n += chunk.length;
        yield chunk;
      }
      yield Buffer.alloc(((512 - (n % 512)) % 512) + 1024);
    })(),
  );
}

function splitPath(p: string): string[] {
  return p.split('/').filter((x) => x !== '' && x !== '.');
}

/** Go's filepath.Match for one pattern against a whole relative path (`*` stays inside a component). */
export function globRegex(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw invalid(`syntax error in pattern: ${pattern}`);
      re += `[${pattern.slice(i + 1, end).replace(/^\^|^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i]!}`;
    else re += /[.+^${}()|\]\\/]/.test(c) ? `\\${c}` : c;
  }
  return new RegExp(`^${re}$`);
}

export const hasWildcards = (p: string) => /[*?[]/.test(p);

/**
 * The context paths a COPY/ADD source names (relative, cleaned). A source
 * reaching above the context is refused, as Docker refuses it.
 */
export function cleanSource(src: string): string {
  const parts: string[] = [];
  for (const part of src.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (!parts.length) throw invalid(`forbidden path outside the build context: ${src}`);
      parts.pop();
    } else parts.push(part);
  }
  return parts.join('/');
}
