/**
 * `diff` and `commit` of a container on block storage. Its writable layer is
 * the overlay's upper directory on its disk, which the host never mounts: the
 * guest writes it as a tar (src/sandbox/guest-files.ts, `guestUpperTar`) and
 * lists its opaque directories (busybox's tar keeps no xattrs). That tar is
 * untrusted: every name is checked (relative, no `..`, no empty or `.`
 * component) and only the entry types a layer holds pass; a bad entry fails
 * the whole request. Overlay's markers become what changes.ts and commit.ts
 * make of them on a host upper directory: a whiteout (a 0:0 character device,
 * or a hard link to one, since overlay shares one inode among whiteouts) is a
 * deletion, `.wh.NAME` in a layer; an opaque directory gets `.wh..wh..opq`.
 */
import path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { invalid } from '../common/errors.js';
import { repack } from '../sandbox/tar-repack.js';
import { AGENT_PATHS, ChangeKind, existsIn, type Change } from './changes.js';

const LAYER_TYPES = new Set<tar.Header['type']>(['file', 'directory', 'symlink', 'link', 'character-device', 'block-device', 'fifo']);

/** NAME of the guest's tar ("./a/b", "./a/" for a directory) as "a/b"; "" for the top. */
function cleanName(name: string): string {
  const rel = name.replace(/^\.\//, '').replace(/\/+$/, '');
  if (rel === '' || rel === '.') return '';
  if (rel.startsWith('/') || rel.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw invalid(`the guest's layer has a bad entry name: ${JSON.stringify(name)}`);
  }
  return rel;
}

/** Under (or at) one of the paths the agent manages? Those never go in a layer. */
const agentPath = (name: string): boolean => [...AGENT_PATHS].some((p) => `/${name}` === p || `/${name}`.startsWith(`${p}/`));

/** Reads the guest's entries in order, remembering whiteouts (for hard links to them). */
class UpperEntries {
  private readonly whiteouts = new Set<string>();

  /** The entry's checked name ("" for the top directory) and whether it is a whiteout. */
  read(h: tar.Header): { name: string; linkname: string; whiteout: boolean } {
    if (!LAYER_TYPES.has(h.type)) throw invalid(`the guest's layer has an entry of type ${String(h.type)}: ${JSON.stringify(h.name)}`);
    const name = cleanName(h.name);
    if (name === '' && h.type !== 'directory') throw invalid("the guest's layer has a top entry that is no directory");
    const linkname = h.type === 'link' ? cleanName(h.linkname ?? '') : (h.linkname ?? '');
    if (h.type === 'link' && linkname === '') throw invalid(`the guest's layer has a hard link to nothing: ${JSON.stringify(h.name)}`);
    const whiteout =
      (h.type === 'character-device' && !h.devmajor && !h.devminor) || (h.type === 'link' && this.whiteouts.has(linkname));
    if (whiteout) this.whiteouts.add(name);
    return { name, linkname, whiteout };
  }
}

/** The writable layer as an OCI layer tar (the paths the agent manages left out, as on 9p roots). */
export function upperLayer(raw: Readable, opaque: Set<string>): Readable {
  const entries = new UpperEntries();
  return repack(raw, (h) => {
    const { name, linkname, whiteout } = entries.read(h);
    if (name === '' || agentPath(name)) return null;
    if (whiteout) {
      const dir = path.posix.dirname(name);
      const wh = `${dir === '.' ? '' : `${dir}/`}.wh.${path.posix.basename(name)}`;
      return { ...h, name: wh, type: 'file', mode: 0o600, size: 0, linkname: '', devmajor: 0, devminor: 0 };
    }
    if (h.type === 'link' && agentPath(linkname)) return null;
    const entry: tar.Header = { ...h, name, linkname };
    if (h.type === 'directory' && opaque.has(name)) return [entry, { ...h, name: `${name}/.wh..wh..opq`, type: 'file', mode: 0o600, uid: 0, gid: 0, size: 0 }];
    return entry;
  });
}

/** Orders paths as a depth-first walk with sorted names (changes.ts's order). */
function byWalk(a: Change, b: Change): number {
  const pa = a.Path.split('/');
  const pb = b.Path.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return pa[i]! < pb[i]! ? -1 : 1;
  }
  return pa.length - pb.length;
}

/** `diff`: the changes the layer makes to LOWER (the image's unpacked root on the host), as changes.ts reads them. */
export async function upperChanges(raw: Readable, lower: string): Promise<Change[]> {
  const entries = new UpperEntries();
  const out: Change[] = [];
  const skipped: string[] = [];
  const extract = tar.extract();
  raw.once('error', (err) => extract.destroy(err));
  raw.pipe(extract);
  try {
    for await (const entry of extract) {
      entry.resume();
      const { name, whiteout } = entries.read(entry.header);
      const r = `/${name}`;
      if (name === '' || skipped.some((s) => r.startsWith(`${s}/`))) continue;
      const inLower = existsIn(lower, r);
      if (AGENT_PATHS.has(r) && !inLower) {
        skipped.push(r);
        continue;
      }
      if (whiteout) {
        if (inLower) out.push({ Path: r, Kind: ChangeKind.Deleted });
        continue;
      }
      out.push({ Path: r, Kind: inLower ? ChangeKind.Modified : ChangeKind.Added });
    }
  } finally {
    raw.destroy();
  }
  return out.sort(byWalk);
}
