/**
 * `docker cp` on the host side: the container's root is its overlay mount on
 * the host, so copying in and out needs no VM. Paths are resolved inside that
 * root as if it were "/" (symlinks included), never outside it; the last
 * component is not followed (`cp` copies a symlink as a symlink, as Docker does).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { invalid, notFound } from '../common/errors.js';
import { applyLayer, entryComponents, resolveInRoot } from '../images/layer.js';

/** What Docker puts in the X-Docker-Container-Path-Stat header. `mode` is Go's
 * os.FileMode layout (dir 1<<31, symlink 1<<27), not a unix st_mode. */
export interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

const GO_MODE_DIR = 2 ** 31;
const GO_MODE_SYMLINK = 2 ** 27;

/** The host path of a container path, its parent resolved inside root. */
export function hostPathIn(root: string, containerPath: string): string {
  if (!containerPath.startsWith('/')) throw invalid(`path must be absolute: ${containerPath}`);
  const parts = entryComponents(containerPath.replace(/\/+$/, '') || '/');
  if (parts.length === 0) return root;
  let parent: string;
  try {
    parent = resolveInRoot(root, parts.slice(0, -1), false);
  } catch {
    throw notFound(`Could not find the file ${containerPath} in container`);
  }
  return path.join(parent, parts[parts.length - 1]!);
}

export function statPath(root: string, containerPath: string): PathStat {
  const p = hostPathIn(root, containerPath);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    throw notFound(`Could not find the file ${containerPath} in container`);
  }
  let mode = st.mode & 0o777;
  if (st.isDirectory()) mode += GO_MODE_DIR;
  if (st.isSymbolicLink()) mode += GO_MODE_SYMLINK;
  return {
    name: path.basename(containerPath) || '/',
    size: st.size,
    mode,
    mtime: st.mtime.toISOString(),
    linkTarget: st.isSymbolicLink() ? fs.readlinkSync(p) : '',
  };
}

/** PathStat from a unix lstat's fields (a root read through the guest). */
export function goPathStat(containerPath: string, st: { mode: number; size: number; mtime: Date; linkTarget: string }): PathStat {
  const type = st.mode & 0o170000;
  let mode = st.mode & 0o777;
  if (type === 0o040000) mode += GO_MODE_DIR;
  if (type === 0o120000) mode += GO_MODE_SYMLINK;
  return { name: path.basename(containerPath) || '/', size: st.size, mode, mtime: st.mtime.toISOString(), linkTarget: st.linkTarget };
}

export function encodePathStat(stat: PathStat): string {
  return Buffer.from(JSON.stringify(stat)).toString('base64');
}

/** Extracts a tar into the container directory DIR (which must exist). */
export async function extractInto(root: string, dir: string, archive: Readable, opts: { copyUidGid: boolean }): Promise<void> {
  let target: string;
  try {
    target = resolveInRoot(root, entryComponents(dir), false);
  } catch {
    throw notFound(`Could not find the file ${dir} in container`);
  }
  if (!fs.statSync(target).isDirectory()) throw invalid(`extraction point is not a directory: ${dir}`);
  // The target is the root for the archive's own paths and links: an entry can
  // land in the target's subtree only, whatever symlinks the archive carries.
  await applyLayer(target, archive, { whiteouts: false, chown: opts.copyUidGid ? undefined : { uid: 0, gid: 0 } });
}
