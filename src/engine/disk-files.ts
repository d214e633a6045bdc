/**
 * `cp` (out and in) and `export` of a container whose root is on block devices: the
 * host never mounts the guest's filesystem, so a guest reads it
 * (src/sandbox/guest-files.ts): the container's own while it runs, else a
 * helper VM (disk-helper.ts). No VM freeze is needed, since the path is
 * resolved in the guest, inside the root, by the process that reads it.
 * `diff` and `commit` read the writable layer the same way (disk-layer.ts).
 */
import type { Readable } from 'node:stream';
import { conflict, forbidden } from '../common/errors.js';
import { guestExtract, guestOpaqueDirs, guestStat, guestTar, guestUpperTar } from '../sandbox/guest-files.js';
import { ROOT_NAME, type Sandbox } from '../sandbox/sandbox.js';
import type { Change } from './changes.js';
import { commitContainer, type CommitOptions } from './commit.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { withHelperGuest, type GuestUse } from './disk-helper.js';
import { goPathStat, type PathStat } from './copy.js';
import { upperChanges, upperLayer } from './disk-layer.js';

/** Runs USE on the container's root in whichever guest has it. */
async function inGuest<T>(
  ctx: EngineContext,
  c: Container,
  what: string,
  use: (sandbox: Sandbox, root: string) => Promise<GuestUse<T>>,
  opts: { writable?: boolean } = {},
): Promise<T> {
  const running = async (): Promise<T> => {
    // a paused guest runs nothing, the agent included
    if (c.record.State.Paused) throw conflict(`container ${c.id} is paused, unpause it first`);
    if (!c.sandbox) throw conflict(`container ${c.id} is not running`);
    return (await use(c.sandbox, c.record.PodId ? c.id.slice(0, 12) : ROOT_NAME)).result;
  };
  if (c.running) return running();
  return withHelperGuest(ctx, c, what, use, running, opts);
}

const ended = (s: Readable): Promise<void> => new Promise((resolve) => s.once('close', resolve));

export function diskStat(ctx: EngineContext, c: Container, containerPath: string): Promise<PathStat> {
  return inGuest(ctx, c, 'stat', async (sandbox, root) => ({
    result: goPathStat(containerPath, await guestStat(sandbox, root, containerPath)),
    done: Promise.resolve(),
  }));
}

export function diskArchive(ctx: EngineContext, c: Container, containerPath: string): Promise<{ stat: PathStat; tar: Readable }> {
  return inGuest(ctx, c, 'archive', async (sandbox, root) => {
    const stat = goPathStat(containerPath, await guestStat(sandbox, root, containerPath));
    const tar = await guestTar(sandbox, root, containerPath);
    return { result: { stat, tar }, done: ended(tar) };
  });
}

/** The root's own filesystem (no /proc, /dev, volumes or binds, as Docker's export). */
export function diskExport(ctx: EngineContext, c: Container): Promise<Readable> {
  return inGuest(ctx, c, 'export', async (sandbox, root) => {
    const tar = await guestTar(sandbox, root, '/', { ownFs: true });
    return { result: tar, done: ended(tar) };
  });
}

/** `cp` in: extracts ARCHIVE into directory DIR of the root (refused for a --read-only root, as on 9p roots). */
export async function diskExtract(ctx: EngineContext, c: Container, dir: string, archive: Readable, opts: { copyUidGid: boolean }): Promise<void> {
  if (c.record.HostConfig.ReadonlyRootfs) throw forbidden('container rootfs is marked read-only');
  await inGuest(ctx, c, 'extract', async (sandbox, root) => ({ result: await guestExtract(sandbox, root, dir, archive, opts), done: Promise.resolve() }), {
    writable: true,
  });
}

/** `diff`: the changes of the writable layer against the image's unpacked root. */
export async function diskChanges(ctx: EngineContext, c: Container): Promise<Change[]> {
  const lower = await ctx.rootfs.imageRootfs(ctx.store.resolve(c.record.ImageId));
  return inGuest(ctx, c, 'diff', async (sandbox, root) => ({ result: await upperChanges(await guestUpperTar(sandbox, root), lower), done: Promise.resolve() }));
}

/**
 * `commit`: the writable layer as a new image. A running container is not
 * paused (a paused guest runs nothing, the agent included): its layer is
 * read as it is at the time, as Docker's `commit --pause=false`.
 */
export function diskCommit(ctx: EngineContext, c: Container, opts: CommitOptions): Promise<string> {
  const image = ctx.store.resolve(c.record.ImageId);
  return inGuest(ctx, c, 'commit', async (sandbox, root) => {
    const opaque = await guestOpaqueDirs(sandbox, root);
    const layer = upperLayer(await guestUpperTar(sandbox, root), opaque);
    return { result: await commitContainer(ctx.store, c, image, layer, opts), done: Promise.resolve() };
  });
}
