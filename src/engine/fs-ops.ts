/**
 * A container's filesystem as the host sees it, without its VM: `cp` both
 * ways and `export` on its root, the changes of its writable layer (`diff`),
 * that layer as a new image (`commit`) and its size.
 */
import type { Readable } from 'node:stream';
import { forbidden, notImplemented } from '../common/errors.js';
import { treeSize } from '../common/tree-size.js';
import { packTree } from '../images/archive/tree.js';
import { containerLayerPaths, mountContainerLayer } from '../images/rootfs.js';
import { containerChanges, type Change } from './changes.js';
import { commitContainer, hostUpperLayer, type CommitOptions } from './commit.js';
import type { Container } from './container.js';
import { diskArchive, diskChanges, diskCommit, diskExport, diskExtract, diskStat } from './disk-files.js';
import { diskBytes, onDisks } from './disk-root.js';
import { extractInto, hostPathIn, statPath, type PathStat } from './copy.js';
import type { EngineContext } from './context.js';
import type { Lifecycle } from './lifecycle.js';

export class ContainerFiles {
  constructor(
    private readonly ctx: EngineContext,
    private readonly lifecycle: Lifecycle,
  ) {}

  /** The container's root on the host (its overlay, mounted if it is not). */
  async root(idOrName: string): Promise<{ container: Container; root: string }> {
    const c = this.onShare(idOrName, 'copying files');
    const lower = await this.ctx.rootfs.imageRootfs(this.ctx.store.resolve(c.record.ImageId));
    return { container: c, root: mountContainerLayer(lower, c.dir) };
  }

  /**
   * The container, if its root is a host overlay. A root on disks is the
   * guest's own filesystem, which the host never mounts: reading it needs the
   * guest's help (the agent, or a helper clone for a stopped container).
   */
  private onShare(idOrName: string, what: string): Container {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) throw notImplemented(`${what} is not supported yet for a container on block storage (created under hyperboxd --storage-driver block)`);
    return c;
  }

  /** `stat` of a path in the container (`cp`'s HEAD request). */
  async stat(idOrName: string, containerPath: string): Promise<PathStat> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) return diskStat(this.ctx, c, containerPath);
    const { root } = await this.root(idOrName);
    return statPath(root, containerPath);
  }

  /**
   * Freezes a running container's VM while the host works on its files, so the
   * guest cannot swap a checked path component for a symlink between the
   * host's check and its use (the Docker CVE-2018-15664 class). Returns the
   * thaw (a no-op for a container that is not running or already paused).
   */
  private async freeze(c: Container): Promise<() => Promise<void>> {
    if (!c.running || c.record.State.Paused) return async () => undefined;
    await this.lifecycle.pause(c.id);
    let thawed = false;
    return async () => {
      if (thawed) return;
      thawed = true;
      await this.lifecycle.unpause(c.id).catch((err: Error) => this.ctx.logger.warn(`unpause ${c.shortName} after a copy: ${err.message}`));
    };
  }

  /** A stream that thaws the container when it ends, fails or is abandoned. */
  private thawAfter(tar: Readable, thaw: () => Promise<void>): Readable {
    for (const ev of ['end', 'error', 'close']) tar.once(ev, () => void thaw());
    return tar;
  }

  /** `cp` out: the stat of PATH and a tar stream of it (the VM frozen until the stream ends). */
  async archive(idOrName: string, containerPath: string): Promise<{ stat: PathStat; tar: Readable }> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) return diskArchive(this.ctx, c, containerPath);
    const { container, root } = await this.root(idOrName);
    const thaw = await this.freeze(container);
    try {
      const stat = statPath(root, containerPath);
      return { stat, tar: this.thawAfter(packTree(hostPathIn(root, containerPath), { topName: stat.name === '/' ? '' : stat.name }), thaw) };
    } catch (err) {
      await thaw();
      throw err;
    }
  }

  /** `cp` in: extracts a tar stream into directory DIR of the container (its VM frozen meanwhile). */
  async extract(idOrName: string, dir: string, archive: Readable, opts: { copyUidGid: boolean }): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) {
      await diskExtract(this.ctx, c, dir, archive, opts);
      return void this.ctx.events.container(c, 'extract-to-dir');
    }
    const { container, root } = await this.root(idOrName);
    if (container.record.HostConfig.ReadonlyRootfs) throw forbidden('container rootfs is marked read-only');
    const thaw = await this.freeze(container);
    try {
      await extractInto(root, dir, archive, opts);
    } finally {
      await thaw();
    }
    this.ctx.events.container(container, 'extract-to-dir');
  }

  /** `export`: the container's whole root as a tar stream (the VM frozen until it ends). */
  async export(idOrName: string): Promise<Readable> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) {
      const tar = await diskExport(this.ctx, c);
      this.ctx.events.container(c, 'export');
      return tar;
    }
    const { container, root } = await this.root(idOrName);
    const thaw = await this.freeze(container);
    this.ctx.events.container(container, 'export');
    return this.thawAfter(packTree(root), thaw);
  }

  /** `commit`: the writable layer as a new image. Returns the image ID. */
  async commit(idOrName: string, opts: CommitOptions & { pause?: boolean }): Promise<string> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) {
      const id = await diskCommit(this.ctx, c, opts);
      this.ctx.events.container(c, 'commit', { comment: opts.comment ?? '' });
      return id;
    }
    const image = this.ctx.store.resolve(c.record.ImageId);
    // As Docker: pause a running container so the layer is read consistently.
    const pause = opts.pause !== false && c.running && !c.record.State.Paused;
    if (pause) await this.lifecycle.pause(c.id);
    try {
      const id = await commitContainer(this.ctx.store, c, image, hostUpperLayer(containerLayerPaths(c.dir).upper), opts);
      this.ctx.events.container(c, 'commit', { comment: opts.comment ?? '' });
      return id;
    } finally {
      if (pause) await this.lifecycle.unpause(c.id).catch((err: Error) => this.ctx.logger.warn(`commit: unpause ${c.shortName}: ${err.message}`));
    }
  }

  /** `diff`: changes of the container's root against its image. */
  async changes(idOrName: string): Promise<Change[]> {
    const c = this.ctx.registry.get(idOrName);
    if (onDisks(c)) return diskChanges(this.ctx, c);
    return containerChanges(containerLayerPaths(c.dir).upper, this.ctx.rootfs.imageRootfsPath(c.record.ImageId));
  }

  /** Bytes in the container's writable layer (`ps -s`, `system df`). */
  writableLayerSize(idOrName: string): number {
    const c = this.ctx.registry.get(idOrName);
    try {
      if (onDisks(c)) return diskBytes(c.dir);
      return treeSize(containerLayerPaths(c.dir).upper);
    } catch (err) {
      // A layer removed meanwhile counts as empty; anything else is worth a line in the log.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.ctx.logger.debug(`size of ${c.shortName}: ${(err as Error).message}`);
      return 0;
    }
  }
}
