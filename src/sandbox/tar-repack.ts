/**
 * Streams a tar through with each entry's header rewritten (or the entry
 * dropped): the names busybox writes made the host's own, and an archive from
 * an API client checked before it reaches the guest. Data is streamed, entry
 * by entry, with backpressure.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { invalid } from '../common/errors.js';

/**
 * A new header for an entry, or null to drop it; throwing fails the stream.
 * A list: the first is the entry's, the others are empty entries added after
 * it (commit's opaque markers).
 */
export type HeaderMap = (h: tar.Header) => tar.Header | tar.Header[] | null;

export function repack(raw: Readable, map: HeaderMap): Readable {
  const extract = tar.extract();
  const pack = tar.pack();
  extract.on('entry', (header, stream, next) => {
    let headers: tar.Header[];
    try {
      const mapped = map(header);
      headers = mapped === null ? [] : Array.isArray(mapped) ? mapped : [mapped];
    } catch (err) {
      stream.resume();
      return void pack.destroy(err as Error);
    }
    const [mapped, ...extra] = headers;
    if (!mapped) {
      stream.resume();
      return void stream.once('end', next);
    }
    const done = (err?: Error | null) => {
      if (err) return void pack.destroy(err);
      for (const h of extra) pack.entry({ ...h, size: 0 }, Buffer.alloc(0));
      next();
    };
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      stream.resume();
      return void pack.entry(mapped, Buffer.alloc(0), done);
    }
    stream.pipe(pack.entry(mapped, done));
  });
  extract.once('finish', () => pack.finalize());
  extract.once('error', (err) => pack.destroy(err));
  raw.once('error', (err) => pack.destroy(err));
  pack.once('close', () => raw.destroy());
  raw.pipe(extract);
  return Readable.from(pack as unknown as AsyncIterable<Buffer>);
}

/** Busybox's names ("./etc/passwd", a "./" entry for "-C DIR .") as packTree names them ("etc/passwd", no root entry). */
export const packTreeNames: HeaderMap = (h) => {
  const name = h.name.replace(/^\.\//, '').replace(/^\.$/, '');
  if (name === '' || name === '/') return null;
  // hard links name their first path, which busybox wrote with "./" too
  const linkname = h.type === 'link' && h.linkname ? h.linkname.replace(/^\.\//, '') : h.linkname;
  return { ...h, name, linkname };
};

/**
 * A client's archive for `cp` in, held to what the host's own extraction
 * allows: every entry (and hard link) lands under the extraction directory,
 * never through a symlink the archive itself made. The guest's tar runs
 * chrooted in the container's root, so nothing could reach past that root
 * anyway; this keeps a copy inside the directory it names, as on 9p roots.
 */
export function confinedEntries(): HeaderMap {
  const symlinks = new Set<string>();
  const inside = (name: string): string => {
    const clean = path.posix.normalize(`/${name}`).slice(1).replace(/\/+$/, '');
    const rel = path.posix.normalize(name.replace(/^\/+/, ''));
    if (rel === '..' || rel.startsWith('../')) throw invalid(`archive entry ${name} escapes the root filesystem`);
    const parts = clean.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (symlinks.has(parts.slice(0, i).join('/'))) throw invalid(`archive entry ${name} escapes the root filesystem (through a symlink of the archive)`);
    }
    return clean;
  };
  return (h) => {
    const name = inside(h.name);
    if (name === '') return null; // the directory itself
    if (h.type === 'symlink') symlinks.add(name);
    else symlinks.delete(name);
    const linkname = h.type === 'link' && h.linkname ? inside(h.linkname) : h.linkname;
    return { ...h, name, linkname };
  };
}
