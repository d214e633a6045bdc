/**
 * The engine: containers and their lifecycle (create, start, stop, kill, remove,
 * wait, attach, exec), on top of images (content store, rootfs builder) and VM
 * sandboxes. It knows nothing of HTTP; the API servers call it.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { AgentConnection, GuestProcess, StartError } from '../agent/connection.js';
import { isQemuOf, QemuVm } from '../vm/qemu.js';
import { conflict, forbidden, HyperboxError, internal, invalid, notFound, notModified } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { RootfsBuilder, containerLayerPaths, createSizedLayer, mountContainerLayer, sizedLayerUsage, unmountContainerLayer } from '../images/rootfs.js';
import { containerChanges, type Change } from './changes.js';
import { commitContainer, type CommitOptions } from './commit.js';
import { ContentStore, type Image } from '../images/store.js';
import { familiarName, parseReference } from '../images/reference.js';
import type { AccelDecision } from '../vm/accel.js';
import { locateGuestAssets, type GuestAssets } from '../vm/assets.js';
import type { ClonePool } from '../vm/pool.js';
import type { GuestShape, TemplateStore } from '../vm/template.js';
import { Container, type Attachment } from './container.js';
import { ExecManager, forwardStdin } from './exec.js';
import { NO_CLONE_LABEL, POD_LABEL } from '../common/labels.js';
import { MetadataStore } from './metadata.js';
import { PodManager, type Pod } from './pods.js';
import { NetworkManager, PREDEFINED, type NetworkRecord } from './net/networks.js';
import { LogWriter, parseLogOptions } from './logs.js';
import { generateName } from './names.js';
import { adoptedSandbox, ROOT_NAME, startSandbox, type Sandbox } from './sandbox.js';
import { parseSignal } from './signals.js';
import { NO_RESTART, restartDelayMs, restartsWithDaemon, shouldRestart, validateRestartPolicy } from './restart.js';
import { NULL_TIME, type ContainerRecord, type ContainerSpec, type HostSpec } from './types.js';
import { allocatePorts, checkPorts, forwardsOf, networkModeOf } from './ports.js';
import { mountsUnder, mountVolumes, resolveMounts, restoreRootWritable, unmountVolumes } from './storage.js';
import { VolumeStore } from './volumes.js';

export interface EngineOptions {
  dataRoot: string;
  /** Kernel/initrd given by configuration (else the defaults of locateGuestAssets). */
  assetOverrides: { kernel?: string; initrd?: string };
  accel: AccelDecision;
  defaultMemoryMiB: number;
  bootTimeoutMs: number;
  logger: Logger;
  /** Start containers as clones of templates (false: always cold boot). */
  clone: boolean;
  templates: TemplateStore;
  pool?: ClonePool;
}

export interface EngineEvent {
  Type: 'container' | 'image' | 'network';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
  timeNano: number;
}

export interface CreateRequest {
  name?: string;
  /** Network aliases (Docker's NetworkingConfig.EndpointsConfig[*].Aliases). */
  aliases?: string[];
  config: Partial<ContainerSpec> & { Image: string };
  host: Partial<HostSpec>;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NAME_RE = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

function mergeEnv(base: string[], extra: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...base, ...extra]) out.set(e.split('=')[0]!, e);
  return [...out.values()];
}

export class Engine extends EventEmitter<{ event: [EngineEvent] }> {
  readonly store: ContentStore;
  readonly rootfs: RootfsBuilder;
  readonly volumes: VolumeStore;
  private readonly containers = new Map<string, Container>();
  readonly execs: ExecManager;
  private readonly containersDir: string;
  private readonly metadata: MetadataStore;
  readonly pods: PodManager;
  readonly networks: NetworkManager;
  private readonly runRoot: string;
  readonly recentEvents: EngineEvent[] = [];
  private assets: GuestAssets;
  private shuttingDown = false;

  constructor(readonly opts: EngineOptions) {
    super();
    this.setMaxListeners(0);
    this.store = new ContentStore(path.join(opts.dataRoot, 'image-store'));
    this.rootfs = new RootfsBuilder(this.store, path.join(opts.dataRoot, 'rootfs'));
    this.volumes = new VolumeStore(path.join(opts.dataRoot, 'volumes'));
    this.containersDir = path.join(opts.dataRoot, 'containers');
    this.metadata = new MetadataStore(path.join(opts.dataRoot, 'hyperbox.db'), this.containersDir);
    this.pods = new PodManager({
      logger: opts.logger,
      metadata: this.metadata,
      podsDir: path.join(opts.dataRoot, 'pods'),
      runRoot: path.join(opts.dataRoot, 'run'),
      sandboxOptions: () => ({
        ...this.guestShape(),
        bootTimeoutMs: this.opts.bootTimeoutMs,
        templates: this.opts.clone ? this.opts.templates : undefined,
      }),
      networks: () => this.networks,
    });
    this.networks = new NetworkManager({
      logger: opts.logger,
      metadata: this.metadata,
      dataRoot: opts.dataRoot,
      members: (networkId) => [
        ...[...this.containers.values()]
          .filter((c) => c.running && c.record.Endpoint?.NetworkId === networkId)
          .map((c) => ({
            endpoint: c.record.Endpoint!,
            names: c.dnsNames,
          })),
        // A pod on a bridge network has one address: its name and its containers' names resolve to it.
        ...this.pods
          .list()
          .filter((p) => p.record.Endpoint?.NetworkId === networkId)
          .map((p) => ({
            endpoint: p.record.Endpoint!,
            names: [p.name, p.record.Hostname, ...this.podContainers(p).filter((c) => c.running).map((c) => c.shortName)],
          })),
      ],
    });
    this.execs = new ExecManager({
      get: (id) => this.get(id),
      processEnv: (c, extra) => this.processEnv(c, extra),
      containerEvent: (c, action, extra) => this.containerEvent(c, action, extra),
    });
    this.runRoot = path.join(opts.dataRoot, 'run');
    fs.mkdirSync(this.containersDir, { recursive: true });
    fs.mkdirSync(this.runRoot, { recursive: true });
    this.assets = locateGuestAssets(opts.assetOverrides);
    this.loadContainers();
  }

  /** The guest kernel and initrd as they are now: a rebuilt agent or kernel is
   * picked up by the next start, and templates made from the old ones go. */
  currentAssets(): GuestAssets {
    const now = locateGuestAssets(this.opts.assetOverrides);
    if (now.fingerprint !== this.assets.fingerprint) {
      this.assets = now;
      for (const k of this.opts.templates.removeStale(now)) this.opts.logger.info(`guest assets changed: removed template ${k}`);
    }
    return now;
  }

  private newContainer(record: ContainerRecord): Container {
    return new Container(record, path.join(this.containersDir, record.Id), (r) => {
      try {
        this.metadata.save(r);
      } catch (err) {
        // A full disk must not wedge the lifecycle: the state stays in memory and
        // is written by the next successful save.
        this.opts.logger.error(`container ${r.Id.slice(0, 12)}: cannot save its state: ${(err as Error).message}`);
      }
    });
  }

  /**
   * Loads containers from the database and reconciles it with the disk: a
   * directory no record names (a create or remove cut short by a crash) is
   * unmounted and deleted; a record whose directory is gone gets a fresh one
   * (its writable layer is lost, which is reported). Running ones are
   * re-attached by recover().
   */
  private loadContainers(): void {
    for (const record of this.metadata.all()) {
      const c = this.newContainer(record);
      if (!fs.existsSync(c.dir)) {
        this.opts.logger.warn(`container ${c.id.slice(0, 12)}: its directory was missing; recreated with an empty writable layer`);
        fs.mkdirSync(c.dir, { recursive: true });
      }
      // Volumes a previous daemon left mounted on a stopped container's root
      // (running ones keep theirs: recover() re-attaches them).
      if (!c.record.State.Running) this.releaseStorage(c);
      this.containers.set(c.id, c);
    }
    for (const id of fs.readdirSync(this.containersDir)) {
      if (this.containers.has(id)) continue;
      const dir = path.join(this.containersDir, id);
      this.opts.logger.warn(`removing ${dir}: no container record names it (an operation cut short)`);
      try {
        unmountVolumes(containerLayerPaths(dir).merged);
        unmountContainerLayer(dir);
      } catch (err) {
        this.opts.logger.warn(`unmount ${dir}: ${(err as Error).message}`);
      }
      if (mountsUnder(dir).length === 0) fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Live restore, after a daemon restart (or crash): containers recorded as
   * running whose VM is still alive get their control channel, main process,
   * logs and exit code back; the agent kept what they printed meanwhile. Those
   * whose VM is gone are marked exited (137). Leftover VMs nobody owns (the
   * warm pool of the previous daemon, a start that was cut short) are stopped.
   */
  async recover(): Promise<void> {
    const owned = new Set<number>();
    // Pod VMs first: their members' processes are adopted on the pod's one agent channel.
    const podRunDirs = await this.pods.recover((pod) =>
      this.podContainers(pod)
        .filter((c) => c.record.State.Running && c.record.MainProcId)
        .map((c) => c.record.MainProcId!),
    );
    await Promise.all(
      [...this.containers.values()]
        .filter((c) => c.record.State.Running)
        .map(async (c) => {
          const error = await this.reattach(c).catch((err: Error) => err.message);
          if (error === undefined) {
            owned.add(c.record.VmPid!);
            return;
          }
          if (c.record.VmPid && c.record.VmRunDir && isQemuOf(c.record.VmPid, c.record.VmRunDir)) process.kill(c.record.VmPid, 'SIGKILL');
          this.opts.logger.warn(`container ${c.id.slice(0, 12)} could not be re-attached: ${error}`);
          Object.assign(c.record.State, {
            Status: 'exited',
            Running: false,
            Paused: false,
            Pid: 0,
            ExitCode: 137,
            Error: error,
            FinishedAt: new Date().toISOString(),
          });
          c.record.VmPid = undefined;
          c.record.Endpoint = undefined;
          c.save();
          this.releaseStorage(c);
        }),
    );
    // Bridges and their DNS come back; TAPs nobody runs on go.
    await this.networks.init();
    this.networks.sweepTaps(new Set([...this.containers.values()].filter((c) => c.running && c.record.Endpoint).map((c) => c.record.Endpoint!.Tap)));
    const keep = new Set<string | undefined>([...[...this.containers.values()].filter((c) => c.record.State.Running).map((c) => c.record.VmRunDir), ...podRunDirs]);
    for (const dir of fs.readdirSync(this.runRoot)) {
      const runDir = path.join(this.runRoot, dir);
      if (keep.has(runDir)) continue;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(runDir, 'qemu.pid'), 'utf8'));
      } catch {
        /* no VM was started there */
      }
      if (pid && !owned.has(pid) && isQemuOf(pid, runDir)) {
        this.opts.logger.info(`stopping a VM left by a previous daemon (${dir})`);
        process.kill(pid, 'SIGKILL');
      }
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  }

  private async reattach(c: Container): Promise<string | undefined> {
    if (c.record.PodId) return this.reattachPodMember(c);
    const { VmPid: pid, VmRunDir: runDir, MainProcId: procId } = c.record;
    if (!pid || !runDir || !procId) return 'the daemon restarted and this container has no live-restore record';
    const vm = QemuVm.adopt(pid, runDir);
    if (!vm) return 'the VM exited while the daemon was down';
    // A paused VM cannot answer the agent handshake: resume it for that moment.
    if (c.record.State.Paused) await vm.qmp('cont');
    const agent = await AgentConnection.connect(vm.paths.control, { timeoutMs: 5000, adopt: [procId] });
    if (c.record.State.Paused) await vm.qmp('stop');
    const main = agent.adopted(procId)!;
    const sandbox = adoptedSandbox(vm, agent, c.record.StartInfo ?? { mode: 'cold', accel: this.opts.accel.accel, phases: {} });
    // A bridge endpoint's TAP survived with the VM; its port proxies died with the old daemon.
    const endpoint = c.record.Endpoint;
    if (endpoint) {
      this.networks.adopt(endpoint);
      await this.networks.bindToVm(sandbox, endpoint, forwardsOf(c.record.Ports ?? {}));
    }
    c.sandbox = sandbox;
    c.main = main;
    c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
    this.wireMainProcess(c, main);
    this.opts.logger.info(`re-attached container ${c.id.slice(0, 12)} (VM pid ${pid})`);
    return undefined;
  }

  /** A pod member after a daemon restart: its process, adopted on its pod's re-attached agent. */
  private reattachPodMember(c: Container): string | undefined {
    let pod: Pod;
    try {
      pod = this.pods.get(c.record.PodId!);
    } catch {
      return 'its pod is gone';
    }
    const main = c.record.MainProcId ? pod.sandbox?.agent.adopted(c.record.MainProcId) : undefined;
    if (!pod.sandbox || !main) return "the pod's VM exited while the daemon was down";
    c.sandbox = podMemberView(pod.sandbox, c);
    c.main = main;
    c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
    this.wireMainProcess(c, main);
    this.opts.logger.info(`re-attached container ${c.id.slice(0, 12)} in pod ${pod.name}`);
    return undefined;
  }

  emitEvent(type: EngineEvent['Type'], action: string, id: string, attributes: Record<string, string>): void {
    const now = Date.now();
    const ev: EngineEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attributes },
      time: Math.floor(now / 1000),
      timeNano: now * 1_000_000,
    };
    this.recentEvents.push(ev);
    if (this.recentEvents.length > 1000) this.recentEvents.shift();
    this.emit('event', ev);
  }

  private containerEvent(c: Container, action: string, extra: Record<string, string> = {}): void {
    this.emitEvent('container', action, c.id, { name: c.name.replace(/^\//, ''), image: c.record.ImageRef, ...extra });
  }

  list(): Container[] {
    return [...this.containers.values()].sort((a, b) => b.record.Created.localeCompare(a.record.Created));
  }

  /** Finds a container by full ID, name, or unique ID prefix (Docker's rules). */
  get(idOrName: string): Container {
    const exact = this.containers.get(idOrName);
    if (exact) return exact;
    const byName = [...this.containers.values()].find((c) => c.name === `/${idOrName.replace(/^\//, '')}`);
    if (byName) return byName;
    if (/^[a-f0-9]+$/.test(idOrName)) {
      const matches = [...this.containers.values()].filter((c) => c.id.startsWith(idOrName));
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1) throw invalid(`multiple IDs found with provided prefix: ${idOrName}`);
    }
    throw notFound(`No such container: ${idOrName}`);
  }

  resolveImage(ref: string): Image {
    return this.store.resolve(ref);
  }

  imageInUse(imageId: string): Container | undefined {
    return [...this.containers.values()].find((c) => c.record.ImageId === imageId);
  }

  async create(req: CreateRequest): Promise<Container> {
    const image = this.store.resolve(req.config.Image);
    const imgCfg = image.config.config;
    let name = req.name ? req.name.replace(/^\//, '') : '';
    if (name && !NAME_RE.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (!name) do name = generateName(); while (this.hasName(name));
    else if (this.hasName(name)) {
      const other = [...this.containers.values()].find((c) => c.name === `/${name}`)!;
      throw conflict(`Conflict. The container name "/${name}" is already in use by container "${other.id}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
    const id = randomBytes(32).toString('hex');
    const entrypoint = req.config.Entrypoint ?? imgCfg.Entrypoint ?? [];
    // As in Docker: an Entrypoint given at create time drops the image's Cmd.
    const cmd = req.config.Cmd?.length ? req.config.Cmd : req.config.Entrypoint ? [] : (imgCfg.Cmd ?? []);
    if (entrypoint.length + cmd.length === 0) throw invalid('no command specified');
    const config: ContainerSpec = {
      Image: req.config.Image,
      Cmd: cmd,
      Entrypoint: entrypoint,
      Env: mergeEnv(imgCfg.Env ?? [], req.config.Env ?? []),
      WorkingDir: req.config.WorkingDir || imgCfg.WorkingDir || '/',
      User: req.config.User || imgCfg.User || '',
      Hostname: req.config.Hostname || id.slice(0, 12),
      Tty: !!req.config.Tty,
      OpenStdin: !!req.config.OpenStdin,
      StdinOnce: !!req.config.StdinOnce,
      AttachStdin: !!req.config.AttachStdin,
      AttachStdout: req.config.AttachStdout ?? true,
      AttachStderr: req.config.AttachStderr ?? true,
      Labels: { ...(imgCfg.Labels ?? {}), ...(req.config.Labels ?? {}) },
      StopSignal: req.config.StopSignal || imgCfg.StopSignal || 'SIGTERM',
      StopTimeout: req.config.StopTimeout,
      ExposedPorts: {},
    };
    if (!config.WorkingDir.startsWith('/')) throw invalid(`the working directory '${config.WorkingDir}' is invalid, it needs to be an absolute path`);
    parseSignal(config.StopSignal);
    const host: HostSpec = {
      AutoRemove: !!req.host.AutoRemove,
      Memory: req.host.Memory ?? 0,
      NanoCpus: req.host.NanoCpus ?? 0,
      ConsoleSize: req.host.ConsoleSize,
      RestartPolicy: req.host.RestartPolicy ?? NO_RESTART,
      LogConfig: req.host.LogConfig,
      Binds: req.host.Binds,
      Mounts: req.host.Mounts,
      Tmpfs: req.host.Tmpfs,
      ReadonlyRootfs: !!req.host.ReadonlyRootfs,
      StorageOpt: req.host.StorageOpt,
      NetworkMode: req.host.NetworkMode || 'default',
      PublishAllPorts: !!req.host.PublishAllPorts,
    };
    if (host.LogConfig?.Type && !['json-file', 'local'].includes(host.LogConfig.Type)) {
      throw invalid(`logging driver "${host.LogConfig.Type}" is not supported by hyperbox (json-file only)`);
    }
    try {
      parseLogOptions(host.LogConfig?.Config);
    } catch (err) {
      throw invalid((err as Error).message);
    }
    const policyError = validateRestartPolicy(host.RestartPolicy, host.AutoRemove);
    if (policyError) throw invalid(policyError);
    const ports = checkPorts(req.host.PortBindings ?? {}, { ...(imgCfg.ExposedPorts ?? {}), ...(req.config.ExposedPorts ?? {}) });
    host.PortBindings = ports.bindings;
    config.ExposedPorts = ports.exposed;
    const userNet = this.userNetwork(host.NetworkMode);
    if (!userNet && networkModeOf(host.NetworkMode) === 'none' && (Object.values(ports.bindings).some((l) => l?.length) || host.PublishAllPorts)) {
      throw invalid('conflicting options: port publishing and the container type network mode');
    }
    if (host.Memory < 0 || (host.Memory > 0 && host.Memory < 6 * 1024 * 1024)) throw invalid('Minimum memory limit allowed is 6MB');
    if (host.NanoCpus < 0) throw invalid('Range of CPUs is from 0.01 to the number of CPUs available');
    let podId: string | undefined;
    let podName = req.config.Labels?.[POD_LABEL];
    if (host.NetworkMode?.startsWith('container:')) {
      // Docker's way of sharing a network namespace; in hyperbox, sharing a VM, which is what pods are.
      const target = this.get(host.NetworkMode.slice('container:'.length));
      if (!target.record.PodId) {
        throw invalid(`cannot join container ${target.name}'s network: it is not in a pod (a container shares a VM only through a pod: pod create, run --pod)`);
      }
      if (podName && this.pods.get(podName).id !== target.record.PodId) throw invalid(`conflicting options: --pod ${podName} and --network ${host.NetworkMode}`);
      podName = target.record.PodId;
    }
    if (podName) {
      const pod = this.pods.get(podName);
      if (Object.values(host.PortBindings ?? {}).some((l) => l?.length) || host.PublishAllPorts) {
        throw invalid(`ports of a pod are published by the pod (pod create -p), not by its containers`);
      }
      if (host.Memory || host.NanoCpus) {
        throw invalid(`a pod's containers share its VM: per-container --memory and --cpus are not supported in a pod`);
      }
      podId = pod.id;
    }
    if (userNet && podId) throw invalid(`a pod's containers use the pod's network: --network ${userNet.Name} and a pod do not go together`);
    const aliases = (req.aliases ?? []).filter((a) => a);
    if (aliases.length && !userNet) throw invalid('network-scoped aliases are supported only for containers on user-defined networks');
    const record: ContainerRecord = {
      PodId: podId,
      NetworkAliases: aliases.length ? aliases : undefined,
      Id: id,
      Name: `/${name}`,
      Created: new Date().toISOString(),
      ImageRef: familiarName(parseReference(req.config.Image)),
      ImageId: image.id,
      Config: config,
      HostConfig: host,
      State: {
        Status: 'created',
        Running: false,
        Paused: false,
        Pid: 0,
        ExitCode: 0,
        Error: '',
        OOMKilled: false,
        StartedAt: NULL_TIME,
        FinishedAt: NULL_TIME,
      },
    };
    record.MountPoints = resolveMounts(host, this.volumes);
    const c = this.newContainer(record);
    const dir = c.dir;
    fs.mkdirSync(dir, { recursive: true });
    // Listed (and its name taken) from now on, so a concurrent create cannot take the name.
    c.busy = 'creating';
    this.containers.set(id, c);
    try {
      const layerBytes = parseLayerLimit(host.StorageOpt);
      if (layerBytes) createSizedLayer(dir, layerBytes);
      const lower = await this.rootfs.imageRootfs(image);
      mountContainerLayer(lower, dir);
      c.save();
    } catch (err) {
      this.containers.delete(id);
      unmountContainerLayer(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    } finally {
      c.busy = undefined;
    }
    this.containerEvent(c, 'create');
    return c;
  }

  private hasName(name: string): boolean {
    return [...this.containers.values()].some((c) => c.name === `/${name}`);
  }

  private processEnv(c: Container, extra: string[] = []): string[] {
    let env = mergeEnv(c.record.Config.Env, extra);
    if (!env.some((e) => e.startsWith('PATH='))) env = [DEFAULT_PATH, ...env];
    env = mergeEnv([`HOSTNAME=${c.record.Config.Hostname}`], env);
    if (c.record.Config.Tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
    if (!env.some((e) => e.startsWith('HOME='))) env.push('HOME=/root');
    return env;
  }

  async start(idOrName: string, opts: { byPolicy?: boolean } = {}): Promise<void> {
    const c = this.get(idOrName);
    if (c.running) throw notModified('container already started');
    if (!opts.byPolicy) {
      // A start by the user resets the policy's count and cancels a pending restart.
      c.record.RestartCount = 0;
      c.record.ManuallyStopped = false;
      if (c.restartTimer) clearTimeout(c.restartTimer);
      c.restartTimer = undefined;
    }
    if (c.busy) throw conflict(`container ${c.id} is busy (${c.busy})`);
    c.busy = 'starting';
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    try {
      const image = this.store.resolve(c.record.ImageId);
      let t = performance.now();
      const rootfs = mountContainerLayer(await this.rootfs.imageRootfs(image), c.dir);
      const hc = c.record.HostConfig;
      const tmpfs = mountVolumes(rootfs, c.record.MountPoints ?? [], !!hc.ReadonlyRootfs);
      phases.rootfs = Math.round(performance.now() - t);
      const { sandbox, root, pod } = await this.startVm(c, rootfs, tmpfs, phases);
      if (sandbox.info.fallbackReason) this.opts.logger.warn(`container ${c.id.slice(0, 12)}: cold boot instead of a clone: ${sandbox.info.fallbackReason}`);
      c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
      t = performance.now();
      const main = await this.startMainProcess(c, sandbox, root);
      phases.exec = Math.round(performance.now() - t);
      phases.total = Math.round(performance.now() - t0);
      c.main = main;
      c.record.StartInfo = sandbox.info;
      c.record.VmPid = sandbox.vm.pid;
      // A pod member's VM is the pod's: the pod keeps its run directory; the member its process.
      c.record.VmRunDir = pod ? undefined : sandbox.vm.runDir;
      c.record.MainProcId = main.id;
      Object.assign(c.record.State, {
        Status: 'running',
        Running: true,
        OOMKilled: false,
        Pid: sandbox.vm.pid,
        ExitCode: 0,
        Error: '',
        StartedAt: new Date().toISOString(),
        FinishedAt: NULL_TIME,
      });
      c.save();
      this.wireMainProcess(c, main);
      this.containerEvent(c, 'start');
      this.opts.logger.debug(`started ${c.id.slice(0, 12)} in ${phases.total} ms ${JSON.stringify(phases)}`);
    } catch (err) {
      c.busy = undefined;
      // As dockerd: a --rm container that cannot start is removed, which also
      // answers the client's wait(condition=removed) and ends its attach.
      if (c.record.HostConfig.AutoRemove) {
        for (const a of c.attachments) a.end();
        c.attachments.clear();
        await this.remove(c.id, { force: true }).catch(() => undefined);
      }
      if (!(err instanceof HyperboxError)) {
        c.record.State.Error = (err as Error).message;
        c.save();
        throw internal((err as Error).message);
      }
      throw err;
    } finally {
      c.busy = undefined;
    }
  }

  /**
   * The VM a starting container runs in, with its root mounted: its pod's, or
   * its own (a clone, a pool VM or a cold boot), on its network. On failure,
   * everything the start set up (storage, network endpoint) is released.
   */
  private async startVm(c: Container, rootfs: string, tmpfs: string[], phases: Record<string, number>): Promise<{ sandbox: Sandbox; root: string; pod?: Pod }> {
    const hc = c.record.HostConfig;
    const fail = (err: unknown): never => {
      this.releaseStorage(c);
      throw err;
    };
    const userNet = this.userNetwork(hc.NetworkMode);
    const netMode = userNet ? 'bridge' : networkModeOf(hc.NetworkMode);
    const { ports, forwards } =
      netMode === 'none' ? { ports: {}, forwards: [] } : await allocatePorts(hc.PortBindings ?? {}, c.record.Config.ExposedPorts ?? {}, !!hc.PublishAllPorts).catch(fail);
    c.record.Ports = ports;
    const pod = c.record.PodId ? this.pods.get(c.record.PodId) : undefined;
    if (pod) {
      // Its pod's VM: the pod publishes the ports (a member has none bound, see create).
      const attached = await this.pods.attach(pod, c.id, rootfs, tmpfs).catch(fail);
      return { sandbox: podMemberView(attached.sandbox, c), root: attached.root, pod };
    }
    const useClone = this.opts.clone && c.record.Config.Labels[NO_CLONE_LABEL] === undefined;
    const options = {
      runDir: path.join(this.runRoot, c.id.slice(0, 12)),
      ...this.guestShape(hc.Memory ? Math.max(128, Math.ceil(hc.Memory / 1048576) + 64) : undefined, Math.max(1, Math.ceil(hc.NanoCpus / 1e9))),
      hostname: c.record.Config.Hostname,
      memoryLimit: hc.Memory,
      rootfs,
      bootTimeoutMs: this.opts.bootTimeoutMs,
      templates: useClone ? this.opts.templates : undefined,
      pool: useClone ? this.opts.pool : undefined,
      tmpfs,
    };
    // On a bridge network the VM's NIC is a TAP and published ports go through a host proxy.
    const { sandbox, endpoint } = userNet
      ? await this.networks.startOn(userNet, c.id, forwards, (net, guestNet) => startSandbox({ ...options, net, guestNet }, phases)).catch(fail)
      : { sandbox: await startSandbox({ ...options, net: { forwards, restrict: netMode === 'none' } }, phases).catch(fail), endpoint: undefined };
    c.record.Endpoint = endpoint;
    return { sandbox, root: ROOT_NAME };
  }

  /** Starts the image's process in the container's root; a failure releases the VM and storage. */
  private async startMainProcess(c: Container, sandbox: Sandbox, root: string): Promise<GuestProcess> {
    c.sandbox = sandbox;
    const cfg = c.record.Config;
    const [rows, cols] = c.record.HostConfig.ConsoleSize ?? [0, 0];
    try {
      return await sandbox.agent.start({
        root,
        args: [...cfg.Entrypoint, ...cfg.Cmd],
        env: this.processEnv(c),
        cwd: cfg.WorkingDir,
        user: cfg.User,
        tty: cfg.Tty,
        stdin: cfg.OpenStdin,
        rows,
        cols,
      });
    } catch (err) {
      sandbox.release();
      c.sandbox = undefined;
      c.record.Endpoint = undefined;
      this.releaseStorage(c);
      if (err instanceof StartError) {
        const code = /executable file not found|no such file or directory/.test(err.message) ? 127 : err.errno === 13 ? 126 : 128;
        Object.assign(c.record.State, { ExitCode: code, Error: err.message });
        c.save();
        throw invalid(`failed to create task for container: failed to start the container process: ${err.message}: unknown`);
      }
      throw err;
    }
  }

  private wireMainProcess(c: Container, main: GuestProcess): void {
    const sandbox = c.sandbox!;
    const forward = (stream: 'stdout' | 'stderr') => (data: Buffer) => {
      for (const rec of c.log!.write(stream, data)) c.emit('output', rec);
      for (const a of c.attachments) a[stream]?.(data);
    };
    main.on('stdout', forward('stdout'));
    main.on('stderr', forward('stderr'));
    main.on('exit', (st) => this.onExit(c, st.code, '', st.oomKilled));
    // A VM that dies under us (QEMU killed, guest panic) is a container killed.
    sandbox.vm.once('exit', (_code, signal) => {
      if (c.main === main) this.onExit(c, 137, `VM exited unexpectedly${signal ? ` (${signal})` : ''}`);
    });
    sandbox.agent.once('close', (err) => {
      if (c.main === main && err) {
        this.opts.logger.warn(`container ${c.id.slice(0, 12)}: agent channel failed: ${err.message}; stopping its VM`);
        sandbox.vm.kill();
      }
    });
    for (const a of c.attachments) if (a.stdin) this.pipeStdin(c, main, a);
    main.release();
  }

  private pipeStdin(c: Container, proc: GuestProcess, a: Attachment): void {
    forwardStdin(a.stdin!, proc, () => {
      if (c.record.Config.StdinOnce || !c.record.Config.OpenStdin) proc.endStdin();
    });
  }

  private onExit(c: Container, code: number, error: string, oomKilled = false): void {
    const main = c.main;
    if (!main) return;
    c.main = undefined;
    const sandbox = c.sandbox;
    c.sandbox = undefined;
    sandbox?.release();
    this.releaseStorage(c);
    Object.assign(c.record.State, {
      Status: 'exited',
      Running: false,
      Paused: false,
      OOMKilled: oomKilled,
      Pid: 0,
      ExitCode: code,
      Error: error,
      FinishedAt: new Date().toISOString(),
    });
    c.record.VmPid = undefined;
    c.record.Endpoint = undefined;
    c.save();
    for (const a of c.attachments) a.end();
    c.attachments.clear();
    this.execs.containerExited(c.id);
    const layer = sizedLayerUsage(c.dir);
    if (layer && layer.free < 1024 * 1024) {
      this.opts.logger.warn(`container ${c.id.slice(0, 12)}: its writable layer is full (${Math.round(layer.used / 1048576)} MiB used): writes in it fail with "No space left on device"`);
    }
    if (oomKilled) this.containerEvent(c, 'oom');
    this.containerEvent(c, 'die', { exitCode: String(code) });
    c.emit('exit', code);
    const count = c.record.RestartCount ?? 0;
    if (!c.removed && !this.shuttingDown && shouldRestart(c.record.HostConfig.RestartPolicy, code, count, !!c.record.ManuallyStopped)) {
      this.scheduleRestart(c, restartDelayMs(count, Date.now() - Date.parse(c.record.State.StartedAt)));
    } else if (c.record.HostConfig.AutoRemove) {
      void this.remove(c.id, { force: true, volumes: true }).catch((err) => this.opts.logger.warn(`auto-remove ${c.id}: ${(err as Error).message}`));
    }
  }

  private scheduleRestart(c: Container, delayMs: number): void {
    c.record.State.Status = 'restarting';
    c.save();
    const timer = setTimeout(() => {
      c.restartTimer = undefined;
      if (c.removed || c.running || c.record.ManuallyStopped) return;
      c.record.RestartCount = (c.record.RestartCount ?? 0) + 1;
      this.start(c.id, { byPolicy: true }).catch((err: Error) => {
        this.opts.logger.warn(`restart of ${c.id.slice(0, 12)} failed: ${err.message}`);
        Object.assign(c.record.State, { Status: 'exited' });
        c.save();
      });
    }, delayMs);
    timer.unref();
    c.restartTimer = timer;
  }

  /** After a daemon start: brings back containers whose policy says so. */
  restartOnBoot(): void {
    for (const c of this.containers.values()) {
      if (!c.running && restartsWithDaemon(c.record.HostConfig.RestartPolicy, !!c.record.ManuallyStopped)) {
        c.record.ManuallyStopped = false;
        this.start(c.id).catch((err: Error) => this.opts.logger.warn(`restart of ${c.id.slice(0, 12)} at daemon start failed: ${err.message}`));
      }
    }
  }

  /** Attaches a client to the container's stdio; before start, it waits for it. */
  attach(idOrName: string, a: Attachment): Container {
    const c = this.get(idOrName);
    c.attachments.add(a);
    if (c.main && a.stdin) this.pipeStdin(c, c.main, a);
    if (!c.running && !c.busy && c.record.State.Status !== 'created') {
      c.attachments.delete(a);
      a.end();
    }
    return c;
  }

  detach(c: Container, a: Attachment): void {
    c.attachments.delete(a);
  }

  async kill(idOrName: string, signal?: string | number): Promise<void> {
    const c = this.get(idOrName);
    if (!c.running || !c.main) throw conflict(`Cannot kill container: ${idOrName}: container ${c.id} is not running`);
    await this.resumeIfPaused(c);
    const signo = parseSignal(signal, 'SIGKILL');
    // Killing it (not signalling it, e.g. the CLI's forwarded SIGWINCH) is a manual stop.
    if (signo === 9 || signo === parseSignal(c.record.Config.StopSignal, 'SIGTERM')) c.record.ManuallyStopped = true;
    c.main.signal(signo);
    if (signo === 9) {
      // The guest may be wedged: make SIGKILL certain.
      const sandbox = c.sandbox;
      setTimeout(() => sandbox?.forceStop(), 2000).unref();
    }
    this.containerEvent(c, 'kill', { signal: String(signo) });
  }

  async stop(idOrName: string, opts: { timeout?: number; signal?: string; byDaemon?: boolean } = {}): Promise<void> {
    const c = this.get(idOrName);
    // A start in progress (a restart by its policy, say) finishes first, then stops.
    for (let i = 0; c.busy === 'starting' && i < 600; i++) await sleepMs(50);
    if (c.restartTimer) {
      // Stopping a container that waits to be restarted: it stays down.
      clearTimeout(c.restartTimer);
      c.restartTimer = undefined;
      c.record.ManuallyStopped = true;
      c.record.State.Status = 'exited';
      c.save();
      return;
    }
    if (!c.running || !c.main) throw notModified('container already stopped');
    if (!opts.byDaemon) c.record.ManuallyStopped = true;
    await this.resumeIfPaused(c);
    const timeout = opts.timeout ?? c.record.Config.StopTimeout ?? 10;
    const exited = c.waitNextExit();
    const signo = parseSignal(opts.signal ?? c.record.Config.StopSignal, 'SIGTERM');
    c.main.signal(signo);
    const graceful = timeout < 0 ? await exited.then(() => true) : await Promise.race([exited.then(() => true), sleepMs(timeout * 1000).then(() => false)]);
    if (!graceful && c.main) {
      c.main.signal(9);
      const sandbox = c.sandbox;
      const forced = await Promise.race([exited.then(() => true), sleepMs(2000).then(() => false)]);
      if (!forced) sandbox?.forceStop();
      await exited;
    }
    this.containerEvent(c, 'stop');
  }

  /** Unmounts a container's volumes and binds from its root (after its VM is gone or going). */
  private releaseStorage(c: Container): void {
    const root = containerLayerPaths(c.dir).merged;
    unmountVolumes(root);
    restoreRootWritable(root);
  }

  /** Containers (names) that reference a volume. */
  volumeUsers(name: string): string[] {
    return this.list().filter((c) => c.record.MountPoints?.some((m) => m.Type === 'volume' && m.Name === name)).map((c) => c.name.replace(/^\//, ''));
  }

  async remove(idOrName: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const c = this.get(idOrName);
    if (c.removed) return;
    if (c.running || c.busy) {
      if (!opts.force) {
        throw conflict(`cannot remove container "${c.name}": container is running: stop the container before removing or force remove`);
      }
      const exited = c.waitNextExit();
      c.sandbox?.forceStop();
      await Promise.race([exited, sleepMs(5000)]);
    }
    if (c.restartTimer) clearTimeout(c.restartTimer);
    // The record goes first: a crash during the cleanup below leaves only a
    // directory no record names, which the next start removes. On a full disk
    // the database may not take even a delete: free the files, then retry.
    let recordGone = true;
    try {
      this.metadata.remove(c.id);
    } catch (err) {
      this.opts.logger.warn(`container ${c.id.slice(0, 12)}: cannot delete its record yet (${(err as Error).message}); freeing its files first`);
      recordGone = false;
    }
    c.removed = true;
    this.containers.delete(c.id);
    c.log?.close();
    try {
      this.releaseStorage(c);
      unmountContainerLayer(c.dir);
    } catch (err) {
      this.opts.logger.warn(`unmount ${c.id}: ${(err as Error).message}`);
    }
    // Never delete recursively through a bind mount (it would delete host data).
    const left = mountsUnder(c.dir);
    if (left.length) this.opts.logger.warn(`container ${c.id}: still mounted, its directory is kept: ${left.join(', ')}`);
    else fs.rmSync(c.dir, { recursive: true, force: true });
    if (opts.volumes) {
      for (const m of c.record.MountPoints ?? []) {
        if (m.Type !== 'volume' || !m.Name) continue;
        try {
          if (this.volumes.get(m.Name).Anonymous && this.volumeUsers(m.Name).length === 0) this.volumes.remove(m.Name, []);
        } catch {
          /* already removed */
        }
      }
    }
    fs.rmSync(path.join(this.runRoot, c.id.slice(0, 12)), { recursive: true, force: true });
    if (!recordGone) this.metadata.remove(c.id);
    if (c.record.PodId) this.leavePod(c.record.PodId, c.id);
    this.execs.forget(c.id);
    this.containerEvent(c, 'destroy');
    c.markRemoved();
  }

  async wait(idOrName: string, condition: 'not-running' | 'next-exit' | 'removed' = 'not-running'): Promise<number> {
    const c = this.get(idOrName);
    if (condition === 'removed') {
      await c.waitRemoved();
      return c.record.State.ExitCode;
    }
    if (condition === 'next-exit') return c.waitNextExit();
    return c.waitNotRunning();
  }

  resize(idOrName: string, rows: number, cols: number): void {
    const c = this.get(idOrName);
    if (!c.main) throw conflict(`Container ${c.id} is not running`);
    if (c.record.Config.Tty) c.main.resize(rows, cols);
  }

  /** Freezes the container's whole VM (vCPUs stopped; memory kept). */
  async pause(idOrName: string): Promise<void> {
    const c = this.get(idOrName);
    if (!c.running || !c.sandbox) throw conflict(`Container ${c.id} is not running`);
    if (c.record.State.Paused) throw conflict(`Container ${c.id} is already paused`);
    await c.sandbox.vm.qmp('stop');
    Object.assign(c.record.State, { Paused: true, Status: 'paused' });
    c.save();
    this.containerEvent(c, 'pause');
  }

  async unpause(idOrName: string): Promise<void> {
    const c = this.get(idOrName);
    if (!c.record.State.Paused || !c.sandbox) throw conflict(`Container ${c.id} is not paused`);
    await c.sandbox.vm.qmp('cont');
    Object.assign(c.record.State, { Paused: false, Status: 'running' });
    c.save();
    this.containerEvent(c, 'unpause');
  }

  /** A paused VM cannot take a signal: stop and kill resume it first, as Docker does. */
  private async resumeIfPaused(c: Container): Promise<void> {
    if (c.record.State.Paused) await this.unpause(c.id);
  }

  rename(idOrName: string, newName: string): void {
    const c = this.get(idOrName);
    const name = newName.replace(/^\//, '');
    if (!NAME_RE.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (`/${name}` === c.name) throw invalid(`Renaming a container with the same name as its current name`);
    if (this.hasName(name)) throw conflict(`Error when allocating new name: Conflict. The container name "/${name}" is already in use.`);
    const oldName = c.name.replace(/^\//, '');
    c.record.Name = `/${name}`;
    c.save();
    this.containerEvent(c, 'rename', { oldName: `/${oldName}` });
  }

  /** The container's root on the host (its overlay, mounted if it is not). */
  async containerRoot(idOrName: string): Promise<{ container: Container; root: string }> {
    const c = this.get(idOrName);
    const lower = await this.rootfs.imageRootfs(this.store.resolve(c.record.ImageId));
    return { container: c, root: mountContainerLayer(lower, c.dir) };
  }

  /** `commit`: the writable layer as a new image. Returns the image ID. */
  async commit(idOrName: string, opts: CommitOptions & { pause?: boolean }): Promise<string> {
    const c = this.get(idOrName);
    const image = this.store.resolve(c.record.ImageId);
    // As Docker: pause a running container so the layer is read consistently.
    const pause = opts.pause !== false && c.running && !c.record.State.Paused;
    if (pause) await this.pause(c.id);
    try {
      const id = await commitContainer(this.store, c, image, containerLayerPaths(c.dir).upper, opts);
      this.containerEvent(c, 'commit', { comment: opts.comment ?? '' });
      return id;
    } finally {
      if (pause) await this.unpause(c.id).catch(() => undefined);
    }
  }

  /** `diff`: changes of the container's root against its image. */
  changes(idOrName: string): Change[] {
    const c = this.get(idOrName);
    return containerChanges(containerLayerPaths(c.dir).upper, this.rootfs.imageRootfsPath(c.record.ImageId));
  }

  /** Bytes in the container's writable layer (`ps -s`, `system df`). */
  writableLayerSize(idOrName: string): number {
    const c = this.get(idOrName);
    let total = 0;
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) total += fs.lstatSync(p).size;
      }
    };
    try {
      walk(containerLayerPaths(c.dir).upper);
    } catch {
      /* layer gone: 0 */
    }
    return total;
  }

  /** Removes every stopped container; returns their IDs. */
  async prune(): Promise<string[]> {
    const victims = this.list().filter((c) => !c.running && !c.busy);
    for (const c of victims) await this.remove(c.id);
    return victims.map((c) => c.id);
  }

  // ---- networks ----------------------------------------------------------------

  /** The user-defined network a NetworkMode names, if it names one (404 for an unknown name). */
  userNetwork(mode: string | undefined): NetworkRecord | undefined {
    if (!mode || PREDEFINED.includes(mode) || mode.startsWith('container:')) return undefined;
    return this.networks.get(mode);
  }

  /** Names of the containers (in any state) and pods set to use a network. */
  networkUsers(net: NetworkRecord): string[] {
    const uses = (mode: string | undefined) => mode === net.Name || mode === net.Id;
    return [
      ...this.list().filter((c) => uses(c.record.HostConfig.NetworkMode)).map((c) => c.shortName),
      ...this.pods.list().filter((p) => uses(p.record.NetworkMode)).map((p) => `pod ${p.name}`),
    ];
  }

  networkRemove(idOrName: string): void {
    const net = this.networks.get(idOrName);
    const users = this.networkUsers(net);
    if (users.length) throw forbidden(`error while removing network: network ${net.Name} id ${net.Id} has active endpoints (${users.join(', ')})`);
    this.networks.remove(net);
    this.emitEvent('network', 'destroy', net.Id, { name: net.Name, type: net.Driver });
  }

  /**
   * `network connect`: a VM's NIC is fixed when it starts, so a container moves
   * to a network while it is stopped, and has one network at a time.
   */
  networkConnect(idOrName: string, container: string, aliases: string[]): void {
    const net = this.networks.get(idOrName);
    const c = this.get(container);
    if (c.running) throw conflict(`container ${c.shortName} is running: hyperbox cannot add a NIC to a running VM; stop it, connect, start it`);
    if (c.record.PodId) throw invalid(`container ${c.shortName} is in a pod and uses its network`);
    const current = this.userNetwork(c.record.HostConfig.NetworkMode);
    if (current && current.Id !== net.Id) throw conflict(`container ${c.shortName} is on network ${current.Name}: a hyperbox container VM has one network; disconnect it first`);
    c.record.HostConfig.NetworkMode = net.Name;
    c.record.NetworkAliases = aliases.length ? aliases : c.record.NetworkAliases;
    c.save();
    this.containerEvent(c, 'update');
  }

  networkDisconnect(idOrName: string, container: string): void {
    const net = this.networks.get(idOrName);
    const c = this.get(container);
    if (this.userNetwork(c.record.HostConfig.NetworkMode)?.Id !== net.Id) throw notFound(`container ${c.shortName} is not connected to network ${net.Name}`);
    if (c.running) throw conflict(`container ${c.shortName} is running: hyperbox cannot remove a running VM's NIC; stop it first`);
    c.record.HostConfig.NetworkMode = 'default';
    c.record.NetworkAliases = undefined;
    c.save();
    this.containerEvent(c, 'update');
  }

  // ---- pods ------------------------------------------------------------------

  podContainers(pod: Pod): Container[] {
    return this.list().filter((c) => c.record.PodId === pod.id);
  }

  /** A container left its pod: unbind its root; the last one out stops the VM. */
  private leavePod(podId: string, containerId: string): void {
    let pod: Pod;
    try {
      pod = this.pods.get(podId);
    } catch {
      return;
    }
    this.pods.detach(pod, containerId);
    if (this.podContainers(pod).length === 0) this.pods.stopVm(pod);
  }

  async podStart(idOrName: string): Promise<void> {
    const pod = this.pods.get(idOrName);
    await this.pods.ensureVm(pod);
    for (const c of this.podContainers(pod).reverse()) if (!c.running && !c.busy) await this.start(c.id);
  }

  async podStop(idOrName: string, timeout?: number): Promise<void> {
    const pod = this.pods.get(idOrName);
    await Promise.all(this.podContainers(pod).filter((c) => c.running).map((c) => this.stop(c.id, { timeout }).catch(() => undefined)));
    this.pods.stopVm(pod);
  }

  async podRemove(idOrName: string, force: boolean): Promise<string[]> {
    const pod = this.pods.get(idOrName);
    const members = this.podContainers(pod);
    if (!force && members.some((c) => c.running)) throw conflict(`pod ${pod.name} has running containers: stop it first or use --force`);
    for (const c of members) await this.remove(c.id, { force: true, volumes: true });
    this.pods.remove(pod);
    return members.map((c) => c.id);
  }

  /** The guest shape a container with this much memory and these vCPUs runs in. */
  guestShape(memoryMiB = this.opts.defaultMemoryMiB, cpus = 1): GuestShape {
    return { assets: this.currentAssets(), accel: this.opts.accel.accel, memoryMiB, cpus };
  }

  get templates(): TemplateStore {
    return this.opts.templates;
  }

  /** Daemon shutdown: stops every VM (containers are recorded as exited), or
   * with live restore leaves containers running for the next daemon. */
  async shutdown(opts: { liveRestore?: boolean } = {}): Promise<void> {
    this.shuttingDown = true;
    for (const c of this.containers.values()) if (c.restartTimer) clearTimeout(c.restartTimer);
    await this.networks.shutdown();
    if (opts.liveRestore) {
      // Only the channels close: the VMs keep running for the next daemon.
      for (const p of this.pods.list()) p.sandbox?.agent.close();
      for (const c of this.containers.values()) c.sandbox?.agent.close();
      await this.opts.pool?.drain();
      return;
    }
    // Starts in progress finish first, so their VMs are stopped too, not orphaned.
    for (let i = 0; [...this.containers.values()].some((c) => c.busy === 'starting') && i < 600; i++) await sleepMs(50);
    await Promise.all(this.pods.list().filter((p) => p.sandbox).map((p) => this.podStop(p.id, 0).catch(() => undefined)));
    const running = [...this.containers.values()].filter((c) => c.running);
    await Promise.all([
      this.opts.pool?.drain(),
      ...running.map((c) => this.stop(c.id, { timeout: 0, byDaemon: true }).catch(() => undefined)),
    ]);
  }
}

/** `--storage-opt size=64m` in bytes (undefined: no limit). */
function parseLayerLimit(opts: Record<string, string> | undefined): number | undefined {
  for (const [k, v] of Object.entries(opts ?? {})) {
    if (k !== 'size') throw invalid(`unknown storage option "${k}" (hyperbox supports size)`);
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim());
    if (!m) throw invalid(`invalid storage size "${v}"`);
    const bytes = Math.floor(Number(m[1]) * 1024 ** 'bkmgt'.indexOf((m[2] || 'b').toLowerCase()));
    if (bytes < 16 * 1024 * 1024) throw invalid('the writable layer must be at least 16MB');
    return bytes;
  }
  return undefined;
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** A pod member's view of its pod's VM: releasing it leaves the VM to the pod;
 * forcing it to stop kills only the member's process. */
function podMemberView(pod: Sandbox, c: Container): Sandbox {
  return { ...pod, release: () => undefined, forceStop: () => c.main?.signal(9) };
}
