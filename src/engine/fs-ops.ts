/**
 * A container's filesystem as the host sees it, without its VM: `cp` both
 * ways and `export` on its root, the changes of its writable layer (`diff`),
 * that layer as a new image (`commit`) and its size.
 */
import type { Readable } from 'node:stream';
import { forbidden } from '../common/errors.js';
import { treeSize } from '../common/tree-size.js';
import { packTree } from '../images/archive/tree.js';
import { containerLayerPaths, mountContainerLayer } from '../images/rootfs.js';
import { containerChanges, type Change } from './changes.js';
import { commitContainer, type CommitOptions } from './commit.js';
import type { Container } from './container.js';
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
    const c = this.ctx.registry.get(idOrName);
    const lower = await this.ctx.rootfs.imageRootfs(this.ctx.store.resolve(c.record.ImageId));
    return { container: c, root: mountContainerLayer(lower, c.dir) };
  }

  /** `stat` of a path in the container (`cp`'s HEAD request). */
  async stat(idOrName: string, containerPath: string): Promise<PathStat> {
    const { root } = await this.root(idOrName);
    return statPath(root, containerPath);
  }

  /** `cp` out: the stat of PATH and a tar stream of it. */
  async archive(idOrName: string, containerPath: string): Promise<{ stat: PathStat; tar: Readable }> {
    const { root } = await this.root(idOrName);
    const stat = statPath(root, containerPath);
    return { stat, tar: packTree(hostPathIn(root, containerPath), { topName: stat.name === '/' ? '' : stat.name }) };
  }

  /** `cp` in: extracts a tar stream into directory DIR of the container. */
  async extract(idOrName: string, dir: string, archive: Readable, opts: { copyUidGid: boolean }): Promise<void> {
    const { container, root } = await this.root(idOrName);
    if (container.record.HostConfig.ReadonlyRootfs) throw forbidden('container rootfs is marked read-only');
    await extractInto(root, dir, archive, opts);
    this.ctx.events.container(container, 'extract-to-dir');
  }

  /** `export`: the container's whole root as a tar stream. */
  async export(idOrName: string): Promise<Readable> {
    const { container, root } = await this.root(idOrName);
    this.ctx.events.container(container, 'export');
    return packTree(root);
  }

  /** `commit`: the writable layer as a new image. Returns the image ID. */
  async commit(idOrName: string, opts: CommitOptions & { pause?: boolean }): Promise<string> {
    const c = this.ctx.registry.get(idOrName);
    const image = this.ctx.store.resolve(c.record.ImageId);
    // As Docker: pause a running container so the layer is read consistently.
    const pause = opts.pause !== false && c.running && !c.record.State.Paused;
    if (pause) await this.lifecycle.pause(c.id);
    try {
      const id = await commitContainer(this.ctx.store, c, image, containerLayerPaths(c.dir).upper, opts);
      this.ctx.events.container(c, 'commit', { comment: opts.comment ?? '' });
      return id;
    } finally {
      if (pause) await this.lifecycle.unpause(c.id).catch((err: Error) => this.ctx.logger.warn(`commit: unpause ${c.shortName}: ${err.message}`));
    }
  }

  /** `diff`: changes of the container's root against its image. */
  changes(idOrName: string): Change[] {
    const c = this.ctx.registry.get(idOrName);
    return containerChanges(containerLayerPaths(c.dir).upper, this.ctx.rootfs.imageRootfsPath(c.record.ImageId));
  }

  /** Bytes in the container's writable layer (`ps -s`, `system df`). */
  writableLayerSize(idOrName: string): number {
    const c = this.ctx.registry.get(idOrName);
    try {
      return treeSize(containerLayerPaths(c.dir).upper);
    } catch (err) {
      // A layer removed meanwhile counts as empty; anything else is worth a line in the log.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.ctx.logger.debug(`size of ${c.shortName}: ${(err as Error).message}`);
      return 0;
    }
  }
}
