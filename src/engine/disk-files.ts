/**
 * `cp` out and `export` of a container whose root is on block devices: the
 * host never mounts the guest's filesystem, so the running guest reads it
 * (src/sandbox/guest-files.ts); no VM freeze is needed, since the path is
 * resolved in the guest, inside the root, by the process that reads it.
 */
import type { Readable } from 'node:stream';
import { conflict, notImplemented } from '../common/errors.js';
import { guestStat, guestTar } from '../sandbox/guest-files.js';
import { ROOT_NAME, type Sandbox } from '../sandbox/sandbox.js';
import type { Container } from './container.js';
import { goPathStat, type PathStat } from './copy.js';

/** The running guest holding C's root, and the root's name there. */
function guestRoot(c: Container, what: string): { sandbox: Sandbox; root: string } {
  if (!c.sandbox || !c.running) {
    throw notImplemented(`${what} is not supported yet for a stopped container on block storage (created under hyperboxd --storage-driver block)`);
  }
  // a paused guest runs nothing, the agent included
  if (c.record.State.Paused) throw conflict(`container ${c.id} is paused, unpause it first`);
  return { sandbox: c.sandbox, root: c.record.PodId ? c.id.slice(0, 12) : ROOT_NAME };
}

export async function diskStat(c: Container, containerPath: string): Promise<PathStat> {
  const { sandbox, root } = guestRoot(c, 'copying files');
  return goPathStat(containerPath, await guestStat(sandbox, root, containerPath));
}

export async function diskArchive(c: Container, containerPath: string): Promise<{ stat: PathStat; tar: Readable }> {
  const { sandbox, root } = guestRoot(c, 'copying files');
  const stat = goPathStat(containerPath, await guestStat(sandbox, root, containerPath));
  return { stat, tar: await guestTar(sandbox, root, containerPath) };
}

/** The root's own filesystem (no /proc, /dev, volumes or binds, as Docker's export). */
export async function diskExport(c: Container): Promise<Readable> {
  const { sandbox, root } = guestRoot(c, 'export');
  return guestTar(sandbox, root, '/', { ownFs: true });
}
