/**
 * The engine's composition root: it builds the stores and services once and
 * hands each the shared context. Everything the API servers do goes through
 * one of the services below; none of them knows HTTP.
 *
 *   registry    lookups by ID, name or prefix          (registry.ts)
 *   containers  create, remove, prune, rename          (removal.ts, create-spec.ts)
 *   lifecycle   start, stop, restart, kill, pause, exit (lifecycle.ts, state.ts, start-vm.ts)
 *   restarts    restart policies                        (restart-manager.ts)
 *   execs       exec                                    (exec.ts)
 *   files       root, diff, commit, sizes               (fs-ops.ts)
 *   networks    bridge networks                         (network-service.ts)
 *   pods        pods and their members                  (pod-service.ts, pods.ts)
 *   volumes     named volumes                           (volume-service.ts)
 *   images      pull, push, import, tag, save, load, rm (image-service.ts)
 *   events      the event bus                           (events.ts)
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BlockStorage, DEFAULT_DISK_BYTES } from '../images/blockfs.js';
import { RootfsBuilder } from '../images/rootfs.js';
import { ContentStore, type Image } from '../images/store.js';
import { locateGuestAssets, type GuestAssets, type GuestShape, type VmDriver } from '../vm/index.js';
import type { EngineContext, EngineOptions } from './context.js';
import { EventBus } from './events.js';
import { ExecManager } from './exec.js';
import { ImageService } from './image-service.js';
import { processEnv } from './create-spec.js';
import { ContainerFiles } from './fs-ops.js';
import { Lifecycle } from './lifecycle.js';
import { migrateContainer, type MigrateResult, type MigrateTarget } from './migrate.js';
import { IncomingMigrations } from './migrate-incoming.js';
import { MetadataStore } from './metadata.js';
import { NetworkManager } from './net/networks.js';
import { NetworkService } from './network-service.js';
import { PodService } from './pod-service.js';
import { PodManager } from './pods.js';
import { loadContainers, Recovery } from './recovery.js';
import { ContainerRegistry } from './registry.js';
import { ContainerQuery } from './container-query.js';
import { ContainerStore } from './removal.js';
import { RestartManager } from './restart-manager.js';
import { VolumeService } from './volume-service.js';
import { VolumeStore } from './volumes.js';

export type { EngineOptions } from './context.js';
export type { EngineEvent } from './events.js';
export type { CreateRequest } from './create-spec.js';

export class Engine {
  readonly events = new EventBus();
  readonly registry = new ContainerRegistry();
  readonly store: ContentStore;
  readonly rootfs: RootfsBuilder;
  readonly blocks: BlockStorage;
  readonly containers: ContainerStore;
  /** `GET /containers/json` with dockerd's filters (container-query.ts). */
  readonly query: ContainerQuery;
  readonly lifecycle: Lifecycle;
  readonly restarts: RestartManager;
  readonly execs: ExecManager;
  readonly files: ContainerFiles;
  readonly networks: NetworkService;
  readonly pods: PodService;
  readonly volumes: VolumeService;
  readonly images: ImageService;
  /** Live migrations coming in (migrate-incoming.ts). */
  readonly migrations: IncomingMigrations;
  private readonly recovery: Recovery;
  private readonly ctx: EngineContext;
  private assets: GuestAssets;
  private shuttingDown = false;

  constructor(readonly opts: EngineOptions) {
    const { dataRoot, logger } = opts;
    this.store = new ContentStore(path.join(dataRoot, 'image-store'));
    this.rootfs = new RootfsBuilder(this.store, path.join(dataRoot, 'rootfs'));
    const containersDir = path.join(dataRoot, 'containers');
    this.blocks = new BlockStorage(this.rootfs, { imagesDir: path.join(dataRoot, 'rootfs'), containersDir, dataRoot });
    const runRoot = path.join(dataRoot, 'run');
    fs.mkdirSync(containersDir, { recursive: true });
    fs.mkdirSync(runRoot, { recursive: true });
    const metadata = new MetadataStore(path.join(dataRoot, 'hyperbox.db'), containersDir);
    this.assets = locateGuestAssets(opts.assetOverrides);
    const registry = this.registry;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const engine = this;
    let pods!: PodManager;
    let networks!: NetworkManager;
    this.ctx = {
      opts,
      logger,
      driver: opts.driver,
      store: this.store,
      rootfs: this.rootfs,
      blocks: this.blocks,
      volumes: new VolumeStore(path.join(dataRoot, 'volumes')),
      metadata,
      registry,
      events: this.events,
      get networks() {
        return networks;
      },
      get pods() {
        return pods;
      },
      containersDir,
      runRoot,
      get shuttingDown() {
        return engine.shuttingDown;
      },
      guestShape: (memoryMiB, cpus) => this.guestShape(memoryMiB, cpus),
    };
    pods = new PodManager({
      logger,
      metadata,
      driver: opts.driver,
      podsDir: path.join(dataRoot, 'pods'),
      runRoot,
      sandboxOptions: () => ({ driver: opts.driver, shape: this.guestShape(), bootTimeoutMs: opts.bootTimeoutMs, clone: opts.clone }),
      networks: () => networks,
    });
    networks = new NetworkManager({
      logger,
      metadata,
      dataRoot,
      defaultSubnet: opts.defaultSubnet,
      noDefaultBridge: opts.defaultBridge === false,
      members: (networkId) => [
        ...registry
          .list()
          .filter((c) => c.running && c.record.Endpoint?.NetworkId === networkId)
          .map((c) => ({ endpoint: c.record.Endpoint!, names: c.dnsNames })),
        // A pod on a bridge network has one address: its name and its containers' names resolve to it.
        ...pods
          .list()
          .filter((p) => p.record.Endpoint?.NetworkId === networkId)
          .map((p) => ({
            endpoint: p.record.Endpoint!,
            names: [p.name, p.record.Hostname, ...registry.podMembers(p.id).filter((c) => c.running).map((c) => c.shortName)],
          })),
      ],
    });
    this.execs = new ExecManager({
      get: (id) => registry.get(id),
      processEnv: (c, extra) => processEnv(c.record.Config, extra),
      containerEvent: (c, action, extra) => this.events.container(c, action, extra),
    });
    this.lifecycle = new Lifecycle(this.ctx, this.execs);
    this.restarts = new RestartManager(this.ctx, (id, o) => this.lifecycle.start(id, o));
    this.containers = new ContainerStore(this.ctx, this.execs, this.restarts);
    this.pods = new PodService(this.ctx, this.lifecycle, this.containers);
    this.containers.pods = this.pods;
    this.lifecycle.remover = this.containers;
    this.lifecycle.restarts = this.restarts;
    this.files = new ContainerFiles(this.ctx, this.lifecycle);
    this.networks = new NetworkService(this.ctx);
    this.volumes = new VolumeService(this.ctx);
    this.images = new ImageService(this.ctx);
    this.query = new ContainerQuery(this.ctx);
    this.recovery = new Recovery(this.ctx, this.lifecycle);
    this.migrations = new IncomingMigrations(this.ctx, this.lifecycle, randomBytes(16).toString('hex'));
    loadContainers(this.ctx);
  }

  /** `migrate`: moves a running container to another daemon, live (migrate.ts). */
  migrate(idOrName: string, target: MigrateTarget): Promise<MigrateResult> {
    const c = this.registry.get(idOrName);
    return migrateContainer(this.ctx, c, target, this.migrations.instanceId, (gone) => this.containers.remove(gone.id, { force: true }));
  }

  /** Live restore and clean-up after a daemon start (recovery.ts). */
  recover(): Promise<void> {
    return this.recovery.recover();
  }

  get driver(): VmDriver {
    return this.opts.driver;
  }

  resolveImage(ref: string): Image {
    return this.store.resolve(ref);
  }

  /** The guest kernel and initrd as they are now: a rebuilt agent or kernel is
   * picked up by the next start, and templates made from the old ones go. */
  currentAssets(): GuestAssets {
    const now = locateGuestAssets(this.opts.assetOverrides);
    if (now.fingerprint !== this.assets.fingerprint) {
      this.assets = now;
      for (const k of this.opts.driver.templates.removeStale(now)) this.opts.logger.info(`guest assets changed: removed template ${k}`);
    }
    return now;
  }

  /** The guest shape a container with this much memory and these vCPUs runs in. */
  guestShape(memoryMiB = this.opts.defaultMemoryMiB, cpus = 1): GuestShape {
    return { assets: this.currentAssets(), accel: this.opts.accel.accel, memoryMiB, cpus };
  }

  /**
   * The shapes this daemon's containers clone from, in the order to make their
   * templates: under the block driver, new containers' (their default-size upper
   * disk mounted ahead) and then restarted containers' (a placeholder upper: their
   * disk exists); else the one shape.
   */
  async templateShapes(memoryMiB?: number, cpus?: number): Promise<GuestShape[]> {
    const base = this.guestShape(memoryMiB, cpus);
    if (this.opts.storageDriver !== 'block') return [base];
    const blank = await this.blocks.ensureBlank(DEFAULT_DISK_BYTES);
    return [
      { ...base, root: 'disks', premountUpper: blank },
      { ...base, root: 'disks' },
    ];
  }

  /** Daemon shutdown: stops every VM (containers are recorded as exited), or
   * with live restore leaves containers running for the next daemon. */
  async shutdown(opts: { liveRestore?: boolean } = {}): Promise<void> {
    this.shuttingDown = true;
    this.migrations.abortAll();
    for (const c of this.registry.all()) this.restarts.clearTimer(c);
    if (opts.liveRestore) {
      await this.ctx.networks.shutdown({ keepBridges: true });
      // Only the channels close: the VMs keep running for the next daemon.
      for (const p of this.ctx.pods.list()) p.sandbox?.agent.close();
      for (const c of this.registry.all()) c.sandbox?.agent.close();
      await this.driver.close();
      await this.flushLogs();
      return;
    }
    // Operations in progress finish first, so the VMs they start are stopped too, not orphaned.
    await Promise.all([...this.registry.all()].map((c) => c.lock.settled()));
    await Promise.all(
      this.ctx.pods
        .list()
        .filter((p) => p.sandbox)
        .map((p) => this.pods.stop(p.id, 0).catch((err: Error) => this.opts.logger.warn(`pod ${p.name}: ${err.message}`))),
    );
    const running = [...this.registry.all()].filter((c) => c.running);
    await Promise.all([
      this.driver.close(),
      ...running.map((c) => this.lifecycle.stop(c.id, { timeout: 0, byDaemon: true }).catch((err: Error) => this.opts.logger.debug(`stop ${c.shortName}: ${err.message}`))),
    ]);
    await this.ctx.networks.shutdown({ keepBridges: false });
    await this.flushLogs();
  }

  /** Output still queued for the container logs reaches the disk before the daemon exits. */
  private async flushLogs(): Promise<void> {
    await Promise.all([...this.registry.all()].map((c) => c.log?.flushed()));
  }
}
