/**
 * Packs a host directory tree into a tar stream without ever following a
 * symlink: used by `cp` out of a container, `export` and `commit`. Files are
 * streamed (no whole-file buffering) with backpressure; hard links are kept as
 * links; device nodes and fifos are kept as such.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

export interface PackEntry {
  /** Path inside the archive. */
  name: string;
  /** Host path. */
  hostPath: string;
  stat: fs.Stats;
}

export interface PackOptions {
  /** Archive name of the top entry ("" packs the directory's contents at the archive root). */
  topName?: string;
  /** Returns a header override (e.g. an overlay whiteout turned into `.wh.`),
   * null to skip the entry (and its subtree), or undefined to keep it as is. */
  transform?: (e: PackEntry) => Partial<tar.Header> | null | undefined;
  /** Extra empty entries to add after directory NAME's own entry (commit's opaque markers). */
  extraEntries?: (name: string) => Array<Partial<tar.Header> & { name: string }>;
}

function typeOf(st: fs.Stats): tar.Header['type'] | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets are not archived
}

export function packTree(hostPath: string, opts: PackOptions = {}): Readable {
  const pack = tar.pack();
  const links = new Map<string, string>();

  async function add(name: string, p: string): Promise<void> {
    const st = fs.lstatSync(p);
    const type = typeOf(st);
    if (!type) return;
    const override = opts.transform?.({ name, hostPath: p, stat: st });
    if (override === null) return;
    const header: tar.Header = {
      name,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      type,
      size: 0,
      linkname: '',
      uname: '',
      gname: '',
      devmajor: 0,
      devminor: 0,
    };
    if (type === 'symlink') header.linkname = fs.readlinkSync(p);
    if (type === 'character-device' || type === 'block-device') {
      header.devmajor = Math.floor(st.rdev / 256) & 0xfff;
      header.devminor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    }
    if (type === 'file' && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = links.get(key);
      if (first !== undefined) Object.assign(header, { type: 'link', linkname: first });
      else links.set(key, name);
    }
    Object.assign(header, override ?? {});
    if (name === '' && type === 'directory') {
      // Packing a directory's contents: the root itself has no entry.
    } else if (header.type === 'file' && type === 'file') {
      header.size = st.size;
      const entry = pack.entry(header);
      await pipeline(fs.createReadStream(p), entry);
    } else {
      // Everything else has no content (a transform may turn a special file into an empty marker).
      header.size = 0;
      await new Promise<void>((resolve, reject) => pack.entry(header, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
    }
    for (const extra of type === 'directory' ? (opts.extraEntries?.(name) ?? []) : []) {
      const h = { ...header, size: 0, linkname: '', ...extra, mtime: st.mtime } as tar.Header;
      await new Promise<void>((resolve, reject) => pack.entry(h, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
    }
    if (type === 'directory' && header.type === 'directory') {
      for (const child of fs.readdirSync(p).sort()) await add(name ? `${name}/${child}` : child, path.join(p, child));
    }
  }

  void (async () => {
    try {
      await add(opts.topName ?? '', hostPath);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return Readable.from(pack as unknown as AsyncIterable<Buffer>);
}
