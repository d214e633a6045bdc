/**
 * COPY and ADD as one image layer, made on the host without a VM: the
 * sources (already confined to their root: the context or another image's
 * unpacked root) are packed under their destination with Docker's directory
 * rules; local tar archives given to ADD are unpacked into the destination.
 * The layer is written to a file while a content signature (names, types,
 * modes, owners, link targets and file hashes, never mtimes) is computed:
 * the signature is what the layer cache keys on.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { invalid } from '../common/errors.js';
import { entryComponents, maybeDecompress } from '../images/layer.js';

export interface CopySource {
  /** Host path (inside its root), never a symlink unless the source itself was copied as one. */
  hostPath: string;
  /** The name it gets when copied into a directory. */
  name: string;
}

export interface CopyRequest {
  sources: CopySource[];
  /** Absolute destination in the image. */
  dest: string;
  /** The destination is a directory (ends with `/`, several sources, or a directory in the image). */
  destIsDir: boolean;
  /** Whether DEST already exists in the image (so its own entry is not rewritten). */
  destExists: boolean;
  owner?: { uid: number; gid: number };
  /** ADD: local tar archives are unpacked into the destination. */
  extractArchives: boolean;
}

type Header = Partial<tar.Header> & { name: string };

class LayerWriter {
  readonly pack = tar.pack();
  private readonly sig = createHash('sha256');
  private readonly written = new Set<string>();

  constructor(private readonly owner?: { uid: number; gid: number }) {}

  get signature(): string {
    return this.sig.digest('hex');
  }

  private note(h: Header, contentHash = ''): void {
    this.sig.update(JSON.stringify([h.name, h.type, h.mode, h.uid, h.gid, h.linkname ?? '', h.size ?? 0, contentHash]) + '\n');
  }

  async entry(h: Header, content?: Readable): Promise<void> {
    const name = h.name.replace(/^\/+/, '');
    if (!name) return;
    const header = { ...h, name, ...(this.owner ?? {}) };
    this.written.add(name);
    if (header.type === 'file' && content) {
      const hash = createHash('sha256');
      const entry = this.pack.entry(header);
      const tee = new Transform({
        transform(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      await pipeline(content, tee, entry);
      this.note(header, hash.digest('hex'));
      return;
    }
    header.size = 0;
    this.note(header);
    await new Promise<void>((resolve, reject) => this.pack.entry(header, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  }

  has(name: string): boolean {
    return this.written.has(name.replace(/^\/+/, ''));
  }
}

function headerOf(name: string, st: fs.Stats, hostPath: string): Header | undefined {
  const base = { name, mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: st.mtime, size: 0 };
  if (st.isFile()) return { ...base, type: 'file', size: st.size };
  if (st.isDirectory()) return { ...base, type: 'directory' };
  if (st.isSymbolicLink()) return { ...base, type: 'symlink', linkname: fs.readlinkSync(hostPath) };
  return undefined; // devices, fifos and sockets of a context are not copied
}

/** A tree, packed under NAME; symlinks inside are kept as links, never followed. */
async function addTree(w: LayerWriter, hostPath: string, name: string): Promise<void> {
  const st = fs.lstatSync(hostPath);
  const h = headerOf(name, st, hostPath);
  if (!h) return;
  await w.entry(h, h.type === 'file' ? fs.createReadStream(hostPath) : undefined);
  if (st.isDirectory()) for (const child of fs.readdirSync(hostPath).sort()) await addTree(w, path.join(hostPath, child), `${name}/${child}`);
}

/**
 * Whether ADD unpacks FILE: a tar (ustar or GNU magic), possibly gzip'd. A
 * gzip'd file that is not a tar is copied as it is, as Docker copies it.
 */
async function isTarArchive(file: string): Promise<boolean> {
  const input = await maybeDecompress(fs.createReadStream(file, { end: 1024 * 1024 }));
  let head = Buffer.alloc(0);
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      head = Buffer.concat([head, chunk]);
      if (head.length >= 512) break;
    }
  } catch {
    return false; // not valid gzip
  } finally {
    input.destroy();
  }
  return head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar';
}

/** ADD's unpacking of a local archive into DIR (names must stay inside it). */
async function addArchive(w: LayerWriter, file: string, dir: string): Promise<void> {
  const extract = tar.extract();
  const input = await maybeDecompress(fs.createReadStream(file));
  const consume = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const parts = entryComponents(h.name);
      if (!parts.length) {
        entry.resume();
        continue;
      }
      const name = `${dir}/${parts.join('/')}`;
      if (h.type === 'link') h.linkname = `${dir}/${entryComponents(h.linkname ?? '').join('/')}`;
      if (!['file', 'directory', 'symlink', 'link'].includes(h.type ?? '')) {
        entry.resume();
        continue;
      }
      await w.entry({ ...h, name } as Header, h.type === 'file' ? (entry as unknown as Readable) : undefined);
      entry.resume();
    }
  })();
  await Promise.all([pipeline(input, extract), consume]);
}

/** Writes the COPY/ADD layer to LAYERFILE; returns its content signature. */
export async function writeCopyLayer(req: CopyRequest, layerFile: string): Promise<string> {
  const w = new LayerWriter(req.owner);
  const out = fs.createWriteStream(layerFile, { mode: 0o600 });
  const done = pipeline(w.pack as unknown as Readable, out);
  try {
    const dest = req.dest.replace(/\/+$/, '') || '/';
    if (req.destIsDir && !req.destExists && dest !== '/') {
      await w.entry({ name: dest, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: new Date(), size: 0 });
    }
    for (const src of req.sources) {
      const st = fs.lstatSync(src.hostPath);
      if (req.extractArchives && st.isFile() && (await isTarArchive(src.hostPath))) {
        await addArchive(w, src.hostPath, dest === '/' ? '' : dest);
      } else if (st.isDirectory()) {
        // A directory's contents go into the destination, never the directory itself.
        if (!req.destExists && dest !== '/' && !w.has(dest)) await w.entry({ ...headerOf(dest, st, src.hostPath)!, name: dest });
        for (const child of fs.readdirSync(src.hostPath).sort()) await addTree(w, path.join(src.hostPath, child), `${dest === '/' ? '' : dest}/${child}`);
      } else {
        await addTree(w, src.hostPath, req.destIsDir ? `${dest === '/' ? '' : dest}/${src.name}` : dest);
      }
    }
    w.pack.finalize();
    await done;
  } catch (err) {
    w.pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err instanceof Error && 'kind' in err ? err : invalid((err as Error).message);
  }
  return w.signature;
}
