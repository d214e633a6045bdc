/** /_ping, /version, /info, /events. */
import os from 'node:os';
import type { Engine, EngineEvent } from '../../../engine/engine.js';
import { API_VERSION, MIN_API_VERSION } from '../http.js';
import type { Method, RouteTable, ServerInfo } from '../server.js';
import { notImplemented } from '../../../common/errors.js';
import { parseFilters } from '../http.js';
import { containerSummary } from '../present.js';
import { imageSummary } from './images.js';

export function systemRoutes(r: RouteTable, engine: Engine, info: ServerInfo): void {
  const ping = (ctx: Parameters<Parameters<RouteTable['add']>[2]>[0]) => {
    const headers = { 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache', Swarm: 'inactive' };
    Object.assign(ctx.commonHeaders, headers);
    ctx.send(200, ctx.req.method === 'HEAD' ? undefined : 'OK', 'text/plain; charset=utf-8');
  };
  r.add('GET', '/_ping', ping);
  r.add('HEAD', '/_ping', ping);

  r.add('GET', '/version', (ctx) => {
    const details = { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, Os: 'linux', Arch: 'amd64', KernelVersion: os.release(), Accelerator: info.accel, Hypervisor: `QEMU ${info.qemuVersion}` };
    ctx.send(200, {
      Platform: { Name: `hyperbox ${info.version} (QEMU ${info.qemuVersion}, ${info.accel})` },
      Components: [
        { Name: 'Engine', Version: info.version, Details: details },
        { Name: 'hypervisor', Version: info.qemuVersion, Details: { Accelerator: info.accel, Reason: info.accelReason } },
      ],
      Version: info.version,
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: 'hyperbox',
      GoVersion: `node ${process.version}`,
      Os: 'linux',
      Arch: 'amd64',
      KernelVersion: os.release(),
      BuildTime: '',
    });
  });

  r.add('GET', '/info', (ctx) => {
    const containers = engine.registry.list();
    const running = containers.filter((c) => c.running).length;
    const paused = containers.filter((c) => c.running && c.record.State.Paused).length;
    ctx.send(200, {
      ID: 'hyperbox',
      Containers: containers.length,
      ContainersRunning: running - paused,
      ContainersPaused: paused,
      ContainersStopped: containers.length - running,
      Images: engine.images.list().length,
      // New containers' storage (--storage-driver); each container keeps the one it was created with.
      ...(engine.opts.storageDriver === 'block'
        ? { Driver: 'block', DriverStatus: [['Backing Filesystem', 'an erofs image per image, an ext4 disk per container (virtio-blk)']] }
        : { Driver: 'overlay', DriverStatus: [['Backing Filesystem', 'overlayfs shared to the VM over virtio-9p']] }),
      Plugins: { Volume: [], Network: [], Authorization: null, Log: ['json-file'] },
      MemoryLimit: true,
      SwapLimit: false,
      CpuCfsPeriod: false,
      CpuCfsQuota: false,
      IPv4Forwarding: false,
      Debug: false,
      NFd: 0,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'json-file',
      CgroupDriver: 'none',
      CgroupVersion: '2',
      NEventsListener: engine.events.listenerCount('event'),
      KernelVersion: os.release(),
      OperatingSystem: `hyperbox (QEMU ${info.qemuVersion} microvm, accelerator: ${info.accel})`,
      OSVersion: '',
      OSType: 'linux',
      Architecture: os.arch() === 'x64' ? 'x86_64' : os.arch(),
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: { InsecureRegistryCIDRs: ['127.0.0.0/8'], IndexConfigs: {}, Mirrors: [] },
      NCPU: os.cpus().length,
      MemTotal: os.totalmem(),
      DockerRootDir: info.dataRoot,
      Name: os.hostname(),
      Labels: [`hyperbox.accelerator=${info.accel}`, `hyperbox.accelerator.reason=${info.accelReason}`],
      ExperimentalBuild: false,
      ServerVersion: info.version,
      Runtimes: { hyperbox: { path: 'qemu-system-x86_64' } },
      DefaultRuntime: 'hyperbox',
      Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
      LiveRestoreEnabled: info.liveRestore,
      Isolation: '',
      InitBinary: '',
      SecurityOptions: ['name=hypervisor'],
      Warnings: info.accel === 'tcg' ? [`WARNING: no usable KVM: ${info.accelReason}`] : [],
      HyperBox: {
        Accelerator: info.accel,
        AcceleratorReason: info.accelReason,
        QemuVersion: info.qemuVersion,
        Templates: engine.driver.templates.list().length,
        PoolSize: engine.driver.poolSize,
        PoolReady: engine.driver.poolReady,
        PoolShapes: engine.driver.poolShapes,
      },
    });
  });

  r.add('GET', '/events', (ctx) => {
    const filters = parseFilters(ctx);
    const since = Number(ctx.query.get('since') ?? NaN);
    const until = Number(ctx.query.get('until') ?? NaN);
    const match = (ev: EngineEvent) =>
      (!filters.type || filters.type.includes(ev.Type)) &&
      (!filters.event || filters.event.some((e) => ev.Action === e || ev.Action.startsWith(`${e}:`))) &&
      (!filters.container || filters.container.some((c) => ev.Actor.ID.startsWith(c) || ev.Actor.Attributes.name === c)) &&
      (!filters.image || filters.image.includes(ev.Actor.Attributes.image ?? ''));
    const res = ctx.beginStream('application/json');
    const write = (ev: EngineEvent) => {
      if (!match(ev)) return;
      res.write(JSON.stringify({ ...ev, status: ev.Action, id: ev.Actor.ID, from: ev.Actor.Attributes.image, scope: 'local' }) + '\n');
    };
    if (Number.isFinite(since)) for (const ev of engine.events.recent) if (ev.time >= since && (!Number.isFinite(until) || ev.time <= until)) write(ev);
    if (Number.isFinite(until) && until * 1000 <= Date.now()) return void res.end();
    engine.events.on('event', write);
    const stop = () => engine.events.off('event', write);
    res.once('close', stop);
    if (Number.isFinite(until)) setTimeout(() => (stop(), res.end()), until * 1000 - Date.now()).unref();
  });

  r.add('GET', '/system/df', (ctx) => {
    const images = engine.images.list();
    const containers = engine.registry.list();
    // Block-device roots: image filesystems count with the layers, a container's
    // writable disk (allocated blocks, not its apparent size) with its SizeRw.
    // Without them (9p roots) the numbers are what they were.
    const blocks = engine.blocks.blockUsage();
    ctx.send(200, {
      LayersSize: images.reduce((n, i) => n + i.size, 0) + blocks.imagesTotal,
      Images: images.map((i) => ({ ...imageSummary(i), Containers: containers.filter((c) => c.record.ImageId === i.id).length })),
      Containers: containers.map((c) => ({
        ...containerSummary(c, engine.driver.builtinNetwork),
        SizeRw: engine.files.writableLayerSize(c.id) + (blocks.containers[c.id] ?? 0),
        SizeRootFs: 0,
      })),
      Volumes: [],
      BuildCache: [],
      HyperBox: {
        ImageFilesystems: blocks.images,
        ImageFilesystemsSize: blocks.imagesTotal,
        WritableDisks: blocks.containers,
        WritableDisksSize: blocks.containersTotal,
        BlankDisksSize: blocks.blanks,
      },
    });
  });


  // Docker endpoints hyperbox does not implement answer 501 with the reason, never a fake success.
  const unsupported: Array<[Method, string, string]> = [
    ['GET', '/containers/:id/checkpoints', 'checkpoints are not supported by hyperbox'],
  ];
  for (const [method, p, why] of unsupported) {
    r.add(method, p, () => {
      throw notImplemented(why);
    });
  }
}
