/**
 * Applies an image layer (tar, optionally gzip or zstd) onto a root filesystem directory
 * on the host, with OCI whiteouts. Layers are hostile input:
 *  - entries with ".." components are refused; absolute names are taken relative
 *    to the root (as Docker does);
 *  - every parent directory is resolved inside the root: a symlink in the path is
 *    followed as if the root were "/", so nothing is ever written outside it;
 *  - the last component is never followed: an existing symlink there is replaced;
 *  - hard links must point at a regular file inside the root;
 *  - the total size written is bounded, so a huge (sparse) entry cannot fill the disk;
 *  - extended attributes are applied byte for byte (read from the raw PAX headers),
 *    but only user.* and file capabilities: others could change how the host treats a file.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { Decompress as ZstdDecompress } from 'fzstd';
import { invalid } from '../common/errors.js';
import { PaxXattrScanner } from './pax-xattrs.js';

export interface ApplyOptions {
  /** Refuse a layer that writes more than this many bytes of file data. */
  maxBytes?: number;
  /** Interpret OCI whiteouts (`.wh.` names). Off for `cp`, where they are plain files. */
  whiteouts?: boolean;
  /** Owner for every entry instead of the archive's (`cp` without `-a`). */
  chown?: { uid: number; gid: number };
}

const DEFAULT_MAX_BYTES = 64 * 1024 ** 3;
const MAX_SYMLINK_HOPS = 40;

/** Splits an entry name into safe components, or throws. */
export function entryComponents(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw invalid(`layer entry "${name}" escapes the root filesystem`);
  if (parts.some((p) => p.includes('\0'))) throw invalid(`layer entry "${name}" has a NUL byte`);
  return parts;
}

/**
 * Resolves directory components under root, following symlinks as if root were
 * "/" (like chroot), creating missing directories when `create` is set. The
 * result is a host path inside root whose every component is a real directory.
 */
export function resolveInRoot(root: string, components: string[], create: boolean): string {
  const stack: string[] = [];
  const queue = [...components];
  let hops = 0;
  while (queue.length) {
    const part = queue.shift()!;
    if (part === '.' || part === '') continue;
    if (part === '..') {
      stack.pop(); // ".." at the root stays at the root
      continue;
    }
    const candidate = path.join(root, ...stack, part);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(candidate);
    } catch {
      st = undefined;
    }
    if (!st) {
      if (!create) throw invalid(`path component ${part} does not exist`);
      fs.mkdirSync(candidate, { mode: 0o755 });
      stack.push(part);
    } else if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) throw invalid('too many levels of symbolic links');
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) stack.length = 0;
      queue.unshift(...target.split('/'));
    } else if (st.isDirectory()) {
      stack.push(part);
    } else {
      throw invalid(`path component ${stack.concat(part).join('/')} is not a directory`);
    }
  }
  return path.join(root, ...stack);
}

function removeAll(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

function setMetadata(target: string, header: tar.Header, isLink: boolean): void {
  const uid = header.uid ?? 0;
  const gid = header.gid ?? 0;
  try {
    fs.lchownSync(target, uid, gid);
  } catch {
    /* not root: keep our own ownership */
  }
  if (!isLink && header.mode !== undefined) fs.chmodSync(target, header.mode & 0o7777);
  const mtime = header.mtime ?? new Date(0);
  try {
    fs.lutimesSync(target, mtime, mtime);
  } catch {
    /* some filesystems refuse times on links */
  }
}

/** A streaming zstd decompressor (fzstd: pure JS; Node 20's zlib has no zstd). */
function zstdDecompressor(): Transform {
  let out: Transform;
  // Copied: the chunks may be views of the decompressor's window, which it reuses.
  const d = new ZstdDecompress((data) => out.push(Buffer.from(data)));
  out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(new Error(`zstd: ${(err as Error).message}`));
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(new Error(`zstd: ${(err as Error).message}`));
      }
    },
  });
  return out;
}

/** A layer stream, decompressed when it starts with a gzip or zstd magic number. */
export async function maybeDecompress(source: Readable): Promise<Readable> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : (first.value as Buffer);
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    })(),
  );
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return rest.pipe(zlib.createGunzip());
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return rest.pipe(zstdDecompressor());
  return rest;
}

/**
 * The xattrs an image may set: user ones and file capabilities. Others
 * (trusted.*, e.g. overlayfs' own markers, security.selinux, system.*) could
 * change how the host treats the file, so they are skipped.
 */
function xattrAllowed(name: string): boolean {
  return name.startsWith('user.') || name === 'security.capability';
}

function applyXattrs(target: string, xattrs: Map<string, Buffer>, entryName: string): void {
  for (const [name, value] of xattrs) {
    if (!xattrAllowed(name) || /[\0\n]/.test(name)) continue;
    // Node has no setxattr: setfattr (package attr), the value base64-encoded so any bytes pass.
    const r = spawnSync('setfattr', ['-h', '-n', name, '-v', `0s${value.toString('base64')}`, target], { encoding: 'utf8' });
    if (r.status !== 0) throw invalid(`cannot set xattr ${name} on ${entryName}: ${(r.stderr || r.error?.message || '').trim()}`);
  }
}

export async function applyLayer(root: string, source: Readable, opts: ApplyOptions = {}): Promise<void> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let written = 0;
  const extract = tar.extract();
  const dirTimes: Array<[string, tar.Header]> = [];
  const input = await maybeDecompress(source);

  const scanner = new PaxXattrScanner();
  const consume = (async () => {
    let index = 0;
    for await (const entry of extract) {
      const h = entry.header;
      try {
        const target = await applyEntry(h, entry as unknown as Readable);
        const xattrs = scanner.xattrs.get(index);
        if (target && xattrs) applyXattrs(target, xattrs, h.name);
      } finally {
        entry.resume();
        index++;
      }
    }
  })();

  /** Applies one entry; returns the path of a file or directory it made (for xattrs). */
  async function applyEntry(h: tar.Header, entry: Readable): Promise<string | undefined> {
    const parts = entryComponents(h.name);
    if (parts.length === 0) return; // the root itself
    const base = parts[parts.length - 1]!;
    const parent = resolveInRoot(root, parts.slice(0, -1), true);

    if (opts.chown) Object.assign(h, opts.chown);
    if (base.startsWith('.wh.') && opts.whiteouts !== false) {
      if (base === '.wh..wh..opq') {
        for (const child of fs.readdirSync(parent)) removeAll(path.join(parent, child));
      } else {
        const victim = base.slice(4);
        if (victim === '' || victim === '.' || victim === '..') throw invalid(`bad whiteout ${h.name}`);
        removeAll(path.join(parent, victim));
      }
      return;
    }

    const target = path.join(parent, base);
    const existing = lstatOrNull(target);
    if (existing && !(existing.isDirectory() && h.type === 'directory')) removeAll(target);

    switch (h.type) {
      case 'directory':
        if (!existing || !existing.isDirectory()) fs.mkdirSync(target, { mode: 0o755 });
        dirTimes.push([target, h]);
        setMetadata(target, h, false);
        return target;
      case 'file':
      case 'contiguous-file': {
        const size = h.size ?? 0;
        if (written + size > maxBytes) throw invalid(`layer exceeds the ${maxBytes}-byte size limit at ${h.name}`);
        written += size;
        await pipeline(entry, fs.createWriteStream(target, { mode: 0o600 }));
        setMetadata(target, h, false);
        return target;
      }
      case 'symlink':
        if (!h.linkname) throw invalid(`symlink ${h.name} has no target`);
        fs.symlinkSync(h.linkname, target);
        setMetadata(target, h, true);
        return;
      case 'link': {
        if (!h.linkname) throw invalid(`hard link ${h.name} has no target`);
        const srcParts = entryComponents(h.linkname);
        let src = '';
        try {
          src = path.join(resolveInRoot(root, srcParts.slice(0, -1), false), srcParts[srcParts.length - 1] ?? '');
        } catch {
          /* reported below */
        }
        const st = src ? lstatOrNull(src) : null;
        if (!st || st.isDirectory()) throw invalid(`hard link ${h.name} points at ${h.linkname}, which is not a file in this image`);
        fs.linkSync(src, target);
        return;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const kind = h.type === 'fifo' ? ['p'] : [h.type === 'block-device' ? 'b' : 'c', String(h.devmajor ?? 0), String(h.devminor ?? 0)];
        const r = spawnSync('mknod', [target, ...kind]);
        if (r.status === 0) setMetadata(target, h, false);
        return; // without privileges device nodes are skipped, as rootless Docker does
      }
      default:
        // pax headers are consumed by tar-stream; other types (e.g. GNU sparse) are refused
        throw invalid(`unsupported tar entry type ${h.type} for ${h.name}`);
    }
  }

  const [piped, consumed] = await Promise.allSettled([pipeline(input, scanner, extract), consume]);
  // The entry error is the meaningful one; the pipeline then only reports a premature close.
  if (consumed.status === 'rejected') throw consumed.reason;
  if (piped.status === 'rejected') throw invalid(`malformed layer archive: ${(piped.reason as Error).message}`);
  // Directory mtimes last: creating children changed them.
  for (const [dir, h] of dirTimes.reverse()) {
    const t = h.mtime ?? new Date(0);
    try {
      fs.utimesSync(dir, t, t);
    } catch {
      /* ignore */
    }
  }
}
