/**
 * Creating and removing containers: the record and the directory of a
 * container come and go here, in the order that a crash at any point leaves
 * something the next daemon start can clean up (recovery.ts).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { conflict } from '../common/errors.js';
import { mountsUnder } from '../common/mounts.js';
import { familiarName, parseReference } from '../images/reference.js';
import { createSizedLayer, mountContainerLayer, unmountContainerLayer } from '../images/rootfs.js';
import { Container } from './container.js';
import type { EngineContext } from './context.js';
import { buildCreateSpec, type CreateRequest } from './create-spec.js';
import type { ExecManager } from './exec.js';
import { userNetworkOf } from './network-service.js';
import type { PodService } from './pod-service.js';
import type { RestartManager } from './restart-manager.js';
import { sleepMs } from './lifecycle.js';
import { releaseStorage } from './start-vm.js';
import { inheritedMounts, resolveMounts } from './storage.js';
import { applyUpdate, type UpdateRequest } from './update.js';
import { NULL_TIME, type ContainerRecord } from './types.js';

/** A Container for RECORD whose state is saved through the metadata store. */
export function containerOf(ctx: EngineContext, record: ContainerRecord): Container {
  return new Container(record, path.join(ctx.containersDir, record.Id), (r) => {
    try {
      ctx.metadata.save(r);
    } catch (err) {
      // A full disk must not wedge the lifecycle: the state stays in memory and
      // is written by the next successful save.
      ctx.logger.error(`container ${r.Id.slice(0, 12)}: cannot save its state: ${(err as Error).message}`);
    }
  });
}

export class ContainerStore {
  pods!: PodService;

  constructor(
    private readonly ctx: EngineContext,
    private readonly execs: ExecManager,
    private readonly restarts: RestartManager,
  ) {}

  async create(req: CreateRequest): Promise<Container> {
    const { ctx } = this;
    const image = ctx.store.resolve(req.config.Image);
    const name = ctx.registry.chooseName(req.name);
    const id = randomBytes(32).toString('hex');
    const spec = buildCreateSpec(req, id, image.config.config, {
      userNetwork: (mode) => userNetworkOf(ctx, mode),
      podId: (podName) => ctx.pods.get(podName).id,
      containerPod: (target) => {
        const c = ctx.registry.get(target);
        return { name: c.name, podId: c.record.PodId };
      },
    });
    const record: ContainerRecord = {
      PodId: spec.podId,
      NetworkAliases: spec.aliases,
      Id: id,
      Name: `/${name}`,
      Created: new Date().toISOString(),
      ImageRef: familiarName(parseReference(req.config.Image)),
      ImageId: image.id,
      Config: spec.config,
      HostConfig: spec.host,
      DiskBytes: spec.diskBytes,
      State: { Status: 'created', Running: false, Paused: false, Pid: 0, ExitCode: 0, Error: '', OOMKilled: false, StartedAt: NULL_TIME, FinishedAt: NULL_TIME },
    };
    const own = resolveMounts(spec.host, ctx.volumes);
    record.MountPoints = [...own, ...inheritedMounts(spec.host.VolumesFrom, (from) => ctx.registry.get(from).record.MountPoints ?? [], own)];
    // Pod members share their pod's 9p share; others get the daemon's storage driver.
    if (ctx.opts.storageDriver === 'block' && !spec.podId) record.Storage = 'block';
    const c = containerOf(ctx, record);
    fs.mkdirSync(c.dir, { recursive: true });
    // Listed (and its name taken) from now on, so a concurrent create cannot take the name.
    ctx.registry.add(c);
    await c.lock.run('create', async () => {
      try {
        if (record.Storage === 'block') await ctx.rootfs.imageRootfs(image); // its disk is made at first start
        else {
          if (spec.layerBytes) createSizedLayer(c.dir, spec.layerBytes);
          mountContainerLayer(await ctx.rootfs.imageRootfs(image), c.dir);
        }
        c.save();
      } catch (err) {
        ctx.registry.delete(id);
        unmountContainerLayer(c.dir);
        fs.rmSync(c.dir, { recursive: true, force: true });
        throw err;
      }
    });
    ctx.events.container(c, 'create');
    return c;
  }

  remove(idOrName: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    if (c.removed) return Promise.resolve();
    if (!opts.force && (c.running || !c.lock.idle)) {
      throw conflict(`cannot remove container "${c.name}": container is running: stop the container before removing or force remove`);
    }
    // A forced removal does not wait out a stop's grace period.
    if (opts.force && c.running) c.forceStop();
    return c.lock.run('remove', () => this.removeUnlocked(c, opts));
  }

  /** Removal with the container's lock held (or from its own failed start). */
  async removeUnlocked(c: Container, opts: { force?: boolean; volumes?: boolean }): Promise<void> {
    const { ctx } = this;
    if (c.removed) return;
    if (c.running) {
      if (!opts.force) throw conflict(`cannot remove container "${c.name}": container is running: stop the container before removing or force remove`);
      const exited = c.waitNextExit();
      c.forceStop();
      await Promise.race([exited, sleepMs(5000)]);
    }
    this.restarts.clearTimer(c);
    // The record goes first: a crash during the cleanup below leaves only a
    // directory no record names, which the next start removes. On a full disk
    // the database may not take even a delete: free the files, then retry.
    let recordGone = true;
    try {
      ctx.metadata.remove(c.id);
    } catch (err) {
      ctx.logger.warn(`container ${c.id.slice(0, 12)}: cannot delete its record yet (${(err as Error).message}); freeing its files first`);
      recordGone = false;
    }
    c.removed = true;
    ctx.registry.delete(c.id);
    c.log?.close();
    try {
      releaseStorage(c);
      unmountContainerLayer(c.dir);
    } catch (err) {
      ctx.logger.warn(`unmount ${c.id}: ${(err as Error).message}`);
    }
    // The writable disk goes even if something below the directory stays mounted (it is never mounted on the host).
    try {
      ctx.blocks.removeContainerDisk(c.dir);
    } catch (err) {
      ctx.logger.warn(`container ${c.id.slice(0, 12)}: cannot remove its writable disk: ${(err as Error).message}`);
    }
    // Never delete recursively through a bind mount (it would delete host data).
    const left = mountsUnder(c.dir);
    if (left.length) ctx.logger.warn(`container ${c.id}: still mounted, its directory is kept: ${left.join(', ')}`);
    else fs.rmSync(c.dir, { recursive: true, force: true });
    if (opts.volumes) this.removeAnonymousVolumes(c);
    fs.rmSync(path.join(ctx.runRoot, c.id.slice(0, 12)), { recursive: true, force: true });
    if (!recordGone) ctx.metadata.remove(c.id);
    if (c.record.PodId) this.pods.leave(c.record.PodId, c.id);
    this.execs.forget(c.id);
    ctx.events.container(c, 'destroy');
    c.markRemoved();
  }

  private removeAnonymousVolumes(c: Container): void {
    for (const m of c.record.MountPoints ?? []) {
      if (m.Type !== 'volume' || !m.Name || !this.ctx.volumes.exists(m.Name)) continue;
      if (this.ctx.volumes.get(m.Name).Anonymous && this.ctx.registry.volumeUsers(m.Name).length === 0) this.ctx.volumes.remove(m.Name, []);
    }
  }

  /** Removes every stopped container; returns their IDs. */
  async prune(): Promise<string[]> {
    const victims = this.ctx.registry.list().filter((c) => !c.running && c.lock.idle);
    for (const c of victims) await this.remove(c.id);
    return victims.map((c) => c.id);
  }

  rename(idOrName: string, newName: string): void {
    const c = this.ctx.registry.get(idOrName);
    const oldName = this.ctx.registry.rename(c, newName);
    this.ctx.events.container(c, 'rename', { oldName });
  }

  /** `docker update` (update.ts): returns dockerd's warnings. */
  update(idOrName: string, req: UpdateRequest): string[] {
    const c = this.ctx.registry.get(idOrName);
    const warnings = applyUpdate(c, req);
    this.ctx.events.container(c, 'update');
    return warnings;
  }
}
