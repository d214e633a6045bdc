/**
 * Pods, Hyper's unit: one VM, several containers. Each container keeps its own
 * root filesystem (its own overlay on the host, bound into the pod VM's share
 * and mounted by the agent as its own /c/<name> in a mount namespace of its own
 * that lacks the other roots; its processes join it and chroot there, so it
 * sees only its image's files), while all of them share the VM's network (they
 * reach each other on localhost) and IPC. The pod VM is started like a
 * warm-pool VM (its share is an empty directory, so it can be a clone of the
 * template), owns the published ports (and its address on a bridge network),
 * lives until the pod stops or its last container is removed, and survives a
 * daemon crash like a container's VM (live restore).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { conflict, invalid, notFound } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { mountsUnder } from '../common/mounts.js';
import { bindRoot, unbindRoot } from '../sandbox/roots.js';
import { adoptSandbox } from '../sandbox/adopt.js';
import { startSandbox, type Sandbox, type SandboxOptions, type StartInfo } from '../sandbox/sandbox.js';
import type { VmDriver } from '../vm/index.js';
import { allocatePorts, checkPorts, forwardsOf, type PortMap } from './ports.js';
import type { MetadataStore } from './metadata.js';
import { PREDEFINED, type Endpoint, type NetworkManager } from './net/networks.js';
import { NULL_TIME } from './types.js';

export interface PodRecord {
  Id: string;
  Name: string;
  Created: string;
  Hostname: string;
  PortBindings: PortMap;
  Ports?: PortMap;
  /** A user-defined (bridge) network for the pod's VM; the user-mode network if unset. */
  NetworkMode?: string;
  /** The VM's address and TAP on that network, while it runs. */
  Endpoint?: Endpoint;
  /** The running VM, for the next daemon to re-attach (live restore). */
  VmPid?: number;
  VmRunDir?: string;
  StartInfo?: StartInfo;
  Labels: Record<string, string>;
  State: { Status: 'created' | 'running' | 'exited'; StartedAt: string; FinishedAt: string };
}

export class Pod {
  sandbox: Sandbox | undefined;
  starting: Promise<Sandbox> | undefined;
  /** Container root names already mounted in the VM. */
  readonly attached = new Set<string>();
  constructor(
    public record: PodRecord,
    readonly dir: string,
  ) {}
  get id(): string {
    return this.record.Id;
  }
  get name(): string {
    return this.record.Name;
  }
  get shareDir(): string {
    return path.join(this.dir, 'share');
  }
}

/** What the pod manager needs from the engine. */
export interface PodHost {
  logger: Logger;
  metadata: MetadataStore;
  podsDir: string;
  runRoot: string;
  driver: VmDriver;
  sandboxOptions(): Omit<SandboxOptions, 'runDir' | 'hostname' | 'rootfs' | 'net' | 'noRoot'>;
  networks(): NetworkManager;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Unbinds a container root from a pod's share; a root that cannot be unbound is kept, not deleted through. */
function unbind(target: string, logger: Logger): void {
  if (!unbindRoot(target)) logger.warn(`${target} is still mounted: kept (never deleted through a mount)`);
}

export class PodManager {
  private readonly pods = new Map<string, Pod>();

  constructor(private readonly host: PodHost) {
    fs.mkdirSync(host.podsDir, { recursive: true });
    // Running pods are re-attached (or found gone) by recover(), once the engine is up.
    for (const record of host.metadata.allRecords<PodRecord>('pods')) {
      const pod = new Pod(record, path.join(host.podsDir, record.Id));
      if (record.State.Status !== 'running') this.clearShare(pod);
      this.pods.set(record.Id, pod);
    }
  }

  private clearShare(pod: Pod): void {
    for (const d of fs.existsSync(pod.shareDir) ? fs.readdirSync(pod.shareDir) : []) unbind(path.join(pod.shareDir, d), this.host.logger);
    pod.attached.clear();
  }

  /**
   * Live restore: the VMs of pods that were running get their agent back, with
   * the given main processes of their containers adopted. A pod whose VM is gone
   * is marked exited. Returns the run directories of the VMs kept.
   */
  async recover(mainProcesses: (pod: Pod) => { procIds: number[]; resume?: Map<number, number> }): Promise<Set<string>> {
    const kept = new Set<string>();
    for (const pod of this.pods.values()) {
      if (pod.record.State.Status !== 'running') continue;
      try {
        await this.reattach(pod, mainProcesses(pod));
        kept.add(pod.record.VmRunDir!);
        this.host.logger.info(`re-attached pod ${pod.name} (VM pid ${pod.record.VmPid})`);
      } catch (err) {
        this.host.logger.warn(`pod ${pod.name} could not be re-attached: ${(err as Error).message}`);
        this.clearShare(pod);
        this.markExited(pod);
      }
    }
    return kept;
  }

  private async reattach(pod: Pod, procs: { procIds: number[]; resume?: Map<number, number> }): Promise<void> {
    const { VmPid: pid, VmRunDir: runDir } = pod.record;
    if (!pid || !runDir) throw new Error('no live-restore record');
    const sandbox = await adoptSandbox(this.host.driver, { pid, runDir, ...procs, info: pod.record.StartInfo ?? { mode: 'cold', accel: 'tcg', phases: {} } });
    const endpoint = pod.record.Endpoint;
    if (endpoint) {
      this.host.networks().adopt(endpoint);
      await this.host.networks().bindToVm(sandbox, endpoint, forwardsOf(pod.record.Ports ?? {}));
    }
    // The roots bound into the share survived on the host; the agent still has them mounted.
    for (const d of fs.existsSync(pod.shareDir) ? fs.readdirSync(pod.shareDir) : []) pod.attached.add(d);
    this.own(pod, sandbox);
  }

  private markExited(pod: Pod): void {
    pod.record.Endpoint = undefined;
    pod.record.VmPid = undefined;
    pod.record.VmRunDir = undefined;
    if (pod.record.State.Status === 'running') pod.record.State = { ...pod.record.State, Status: 'exited', FinishedAt: new Date().toISOString() };
    this.save(pod);
  }

  /** Makes a started or re-attached VM the pod's, and follows its exit. */
  private own(pod: Pod, sandbox: Sandbox): void {
    pod.sandbox = sandbox;
    sandbox.vm.once('exit', () => {
      if (pod.sandbox !== sandbox) return;
      pod.sandbox = undefined;
      sandbox.release();
      this.markExited(pod);
    });
  }

  private save(pod: Pod): void {
    this.host.metadata.saveRecord('pods', pod.record);
  }

  list(): Pod[] {
    return [...this.pods.values()].sort((a, b) => b.record.Created.localeCompare(a.record.Created));
  }

  get(idOrName: string): Pod {
    const byName = [...this.pods.values()].find((p) => p.name === idOrName);
    if (byName) return byName;
    const byId = [...this.pods.values()].filter((p) => p.id.startsWith(idOrName));
    if (byId.length === 1) return byId[0]!;
    throw notFound(`no such pod: ${idOrName}`);
  }

  create(opts: { name?: string; portBindings?: PortMap; hostname?: string; labels?: Record<string, string>; network?: string }): Pod {
    const id = randomBytes(32).toString('hex');
    const name = opts.name || `pod-${id.slice(0, 8)}`;
    if (!NAME_RE.test(name)) throw invalid(`invalid pod name "${name}"`);
    if ([...this.pods.values()].some((p) => p.name === name)) throw conflict(`a pod named "${name}" already exists`);
    const { bindings } = checkPorts(opts.portBindings ?? {}, {});
    const network = opts.network && !PREDEFINED.includes(opts.network) ? this.host.networks().get(opts.network).Name : undefined;
    const record: PodRecord = {
      Id: id,
      Name: name,
      Created: new Date().toISOString(),
      Hostname: opts.hostname || name,
      PortBindings: bindings,
      NetworkMode: network,
      Labels: opts.labels ?? {},
      State: { Status: 'created', StartedAt: NULL_TIME, FinishedAt: NULL_TIME },
    };
    const pod = new Pod(record, path.join(this.host.podsDir, id));
    fs.mkdirSync(pod.shareDir, { recursive: true });
    this.pods.set(id, pod);
    this.save(pod);
    return pod;
  }

  /** The pod's VM, started on first need (one start at a time). */
  async ensureVm(pod: Pod): Promise<Sandbox> {
    if (pod.sandbox && !pod.sandbox.exited) return pod.sandbox;
    pod.starting ??= this.startVm(pod).finally(() => (pod.starting = undefined));
    return pod.starting;
  }

  private async startVm(pod: Pod): Promise<Sandbox> {
    const exposed = Object.fromEntries(Object.keys(pod.record.PortBindings).map((k) => [k, {}]));
    const { ports, forwards } = await allocatePorts(pod.record.PortBindings, exposed, false);
    const phases: Record<string, number> = {};
    const options = {
      ...this.host.sandboxOptions(),
      runDir: path.join(this.host.runRoot, `pod-${pod.id.slice(0, 12)}`),
      hostname: pod.record.Hostname,
      rootfs: pod.shareDir,
      noRoot: true,
    };
    // On a bridge network the pod VM gets a TAP and an address; its ports go through a host proxy.
    const net = this.host.networks().bridgeFor(pod.record.NetworkMode);
    const { sandbox, endpoint } = net
      ? await this.host.networks().startOn(net, pod.id, forwards, (spec, guestNet) => startSandbox({ ...options, net: spec, guestNet }, phases))
      : { sandbox: await startSandbox({ ...options, net: { forwards } }, phases), endpoint: undefined };
    pod.attached.clear();
    pod.record.Ports = ports;
    pod.record.Endpoint = endpoint;
    pod.record.VmPid = sandbox.pid;
    pod.record.VmRunDir = sandbox.runDir;
    pod.record.StartInfo = sandbox.info;
    pod.record.State = { Status: 'running', StartedAt: new Date().toISOString(), FinishedAt: NULL_TIME };
    this.save(pod);
    this.own(pod, sandbox);
    this.host.logger.info(`pod ${pod.name}: VM started (${sandbox.info.mode}, ${JSON.stringify(phases)})`);
    return sandbox;
  }

  /**
   * Puts a container's root into the pod VM and returns the sandbox view the
   * container uses: the pod's VM and agent, released by the pod, not by it.
   */
  async attach(pod: Pod, containerId: string, rootfs: string, tmpfs: string[], hosts?: (gateway: string | undefined) => string[]): Promise<{ sandbox: Sandbox; root: string }> {
    const vmSandbox = await this.ensureVm(pod);
    const name = containerId.slice(0, 12);
    if (!pod.attached.has(name)) {
      const target = path.join(pod.shareDir, name);
      if (fs.existsSync(target)) unbind(target, this.host.logger);
      bindRoot(target, rootfs);
      // Its own mount namespace: the other containers' roots are not in it.
      const builtin = this.host.driver.builtinNetwork;
      const gateway = pod.record.Endpoint?.Gateway ?? builtin.hostGateway ?? builtin.gateway;
      await vmSandbox.mountRoot(name, name, tmpfs, { isolate: true, hosts: hosts?.(gateway) });
      pod.attached.add(name);
    }
    return { sandbox: vmSandbox, root: name };
  }

  /** A container left the pod for good: its root is unbound from the share. */
  detach(pod: Pod, containerId: string): void {
    const name = containerId.slice(0, 12);
    pod.attached.delete(name);
    unbind(path.join(pod.shareDir, name), this.host.logger);
  }

  /** Stops the pod VM (its containers must already be stopped). */
  stopVm(pod: Pod): void {
    const sandbox = pod.sandbox;
    pod.sandbox = undefined;
    sandbox?.release();
    for (const name of pod.attached) unbind(path.join(pod.shareDir, name), this.host.logger);
    pod.attached.clear();
    this.markExited(pod);
  }

  remove(pod: Pod): void {
    this.stopVm(pod);
    for (const d of fs.existsSync(pod.shareDir) ? fs.readdirSync(pod.shareDir) : []) unbind(path.join(pod.shareDir, d), this.host.logger);
    const left = mountsUnder(pod.dir);
    if (left.length) this.host.logger.warn(`pod ${pod.name}: still mounted, its directory is kept: ${left.join(', ')}`);
    else fs.rmSync(pod.dir, { recursive: true, force: true });
    this.pods.delete(pod.id);
    this.host.metadata.removeRecord('pods', pod.id);
  }
}
