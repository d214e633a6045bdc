/**
 * A sandbox is one VM with a connected agent and, usually, a container root
 * mounted in it: the thing a container (or a pod) runs its processes in. This
 * module owns how a sandbox comes to be (a warm-pool VM, an instant clone, or a
 * cold boot, in that order of preference, saying why it fell back), times each
 * phase for `inspect`, and how it ends. It depends only on a VmDriver and the
 * agent protocol, so programs other than hyperboxd can use it (see ./index.ts).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AgentConnection, type GuestNetwork, type GuestProcess, type MountOptions, type ProcessSpec, type RootLimits } from '../agent/connection.js';
import type { GuestStats } from '../agent/stats.js';
import { internal } from '../common/errors.js';
import { mountsUnder } from '../common/mounts.js';
import type { DeviceLayout, GuestShape, HostUsage, NetSpec, RootDisks, VmDriver, VmHandle, VmState, WarmVm } from '../vm/index.js';
import { bindRoot, unbindRoot } from './roots.js';
import { VmTies } from './ties.js';

/** How a sandbox's VM came to be, for `inspect`. */
export interface StartInfo {
  mode: 'cold' | 'clone' | 'pool';
  accel: string;
  /** Milliseconds per phase (rootfs, vm, boot, configure, mount, exec) and total. */
  phases: Record<string, number>;
  fallbackReason?: string;
}

export interface SandboxOptions {
  driver: VmDriver;
  runDir: string;
  shape: GuestShape;
  hostname: string;
  /** The container's --memory, enforced by a cgroup in the guest (bytes; 0: none). */
  memoryLimit?: number;
  /** Host directory with the container's merged root filesystem (or, with
   * `noRoot`, the directory shared empty that roots are bound into later). */
  rootfs: string;
  bootTimeoutMs: number;
  /** Start as a clone of a template (falls back to a cold boot, saying why). */
  clone?: boolean;
  /**
   * A pre-started clone the caller took from the driver's warm pool (see
   * `takeWarmFor`); its NIC backend is what `net` says. Falls back to a clone
   * or a cold boot if it cannot be used.
   */
  warmVm?: WarmVm;
  /** The NIC's backend: published ports, `restrict` for `--network none`, or a TAP. */
  net: NetSpec;
  /** tmpfs mounts inside the root, as "/path[:opts]". */
  tmpfs?: string[];
  /** Extra /etc/hosts lines ("IP NAME") for the root, given the guest's gateway. */
  hosts?: (gateway: string | undefined) => string[];
  /** A pod VM: the share is an empty directory container roots are bound into
   * later; no root is mounted at start. */
  noRoot?: boolean;
  /** eth0's configuration when it is not the driver's built-in network's (a bridge endpoint). */
  guestNet?: GuestNetwork;
  /**
   * A root on disks (the shape's `root` says so): the files behind them, and
   * the binds the guest makes from the share (`rootfs`, then the binds' directory).
   */
  disks?: { files: RootDisks; binds: NonNullable<MountOptions['binds']>; readonly: boolean; discardOnExit?: boolean };
}

/** Name of the root a plain sandbox mounts (processes name it in `exec`). */
export const ROOT_NAME = 'root';
/** Where a warm-pool VM's root is bound under its share. */
const WARM_SUBDIR = 'root';

export class Sandbox extends VmTies {
  constructor(
    vm: VmHandle,
    readonly agent: AgentConnection,
    readonly info: StartInfo,
    readonly rootTag: string,
    private readonly cleanup: () => void,
    private readonly forceStopOverride?: () => void,
    /** A member's view: the VM and its agent channel are the pod's, not this view's. */
    private readonly isView = false,
  ) {
    super(vm);
  }

  /**
   * A view of this sandbox for one member of a pod: releasing it leaves the VM
   * to the pod; forcing it to stop runs FORCESTOP (kill the member's process).
   */
  memberView(forceStop: () => void): Sandbox {
    return new Sandbox(this.vm, this.agent, this.info, this.rootTag, () => undefined, forceStop, true);
  }

  get pid(): number {
    return this.vm.pid;
  }
  get runDir(): string {
    return this.vm.runDir;
  }
  get exited(): boolean {
    return this.vm.exited;
  }
  get state(): VmState {
    return this.vm.state;
  }

  /** Starts a process in one of the sandbox's roots. */
  exec(spec: ProcessSpec): Promise<GuestProcess> {
    return this.agent.start(spec);
  }

  /** Mounts another root: DIR under the root share, with a mount namespace of its own if `isolate`. */
  mountRoot(name: string, subdir: string, tmpfs: string[] = [], opts: MountOptions = {}): Promise<void> {
    return this.agent.mountRoot(this.rootTag, name, subdir, tmpfs, opts);
  }

  /** The cgroup limits of root NAME (its own cgroup in the guest). */
  setLimits(name: string, limits: RootLimits): Promise<void> {
    return this.agent.setLimits(name, limits);
  }

  stats(): Promise<GuestStats> {
    return this.agent.stats();
  }

  hostUsage(): HostUsage {
    return this.vm.hostUsage();
  }

  pause(): Promise<void> {
    return this.vm.pause();
  }

  resume(): Promise<void> {
    return this.vm.resume();
  }

  /** Done with it: closes the agent channel, stops the VM and cleans up what its start left on the host. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.isView) return;
    this.agent.close();
    this.cleanup();
    this.runHooks();
  }

  /** Whether forceStop was called: its agent channel then closes as expected, not as a failure. */
  forced = false;

  /** Ends it for certain when its processes do not stop: the VM is stopped. */
  forceStop(): void {
    this.forced = true;
    if (this.forceStopOverride) this.forceStopOverride();
    else this.vm.stop();
  }

  waitExit(): Promise<void> {
    return this.vm.waitExit();
  }
}

function phaseClock(phases: Record<string, number>): (phase: string) => void {
  let t = performance.now();
  return (phase) => {
    const now = performance.now();
    phases[phase] = Math.round(now - t);
    t = now;
  };
}

/** The latest VM given each run directory: a restarted container's new VM may use it before the old one is gone. */
const runDirUsers = new Map<string, VmHandle>();

/**
 * Stops VM and removes RUNDIR once it is gone, never through a mount, and not
 * if a newer VM has the directory meanwhile (a restart): its sockets are there.
 */
export function stopAndRemove(vm: VmHandle, runDir: string, before?: () => void): () => void {
  runDirUsers.set(runDir, vm);
  return () => {
    vm.stop();
    void vm.waitExit().then(() => {
      before?.();
      if (runDirUsers.get(runDir) !== vm) return;
      runDirUsers.delete(runDir);
      try {
        if (mountsUnder(runDir).length === 0) fs.rmSync(runDir, { recursive: true, force: true });
      } catch (err) {
        // a leftover directory is swept at the next start; never a reason to take the daemon down
        process.emitWarning(`remove ${runDir}: ${(err as Error).message}`);
      }
    });
  };
}

/**
 * A warm-pool VM for a sandbox that is to have NET, if one is ready. A pool
 * VM's NIC backend was set up before its container existed: on the built-in
 * network it serves only sandboxes without published ports; a pool TAP serves
 * any bridge network (the TAP is moved onto the bridge, ports are proxied).
 */
export function takeWarmFor(driver: VmDriver, shape: GuestShape, net: 'bridge' | NetSpec): WarmVm | undefined {
  if (net === 'bridge') return driver.takeWarm(shape, 'tap');
  if (net.restrict || net.tap || net.forwards.length) return undefined;
  return driver.takeWarm(shape, 'builtin');
}

export async function startSandbox(opts: SandboxOptions, phases: Record<string, number> = {}): Promise<Sandbox> {
  const { driver } = opts;
  const rootTag = driver.layoutFor(opts.shape).shares[0]?.tag;
  const mark = phaseClock(phases);
  let vm: VmHandle | undefined;
  let mode: StartInfo['mode'] = 'cold';
  let fallbackReason: string | undefined;
  let subdir: string | undefined;
  let cleanup = (): void => vm?.stop();
  const warm = opts.warmVm;
  if (warm) {
    const bound: string[] = [];
    /** Binds SOURCE at NAME (one path component) under the pool VM's share. */
    const bindIntoShare = (name: string, source: string) => {
      if (path.basename(name) !== name || name === '..' || name === '.') throw new Error(`bad share entry ${JSON.stringify(name)}`);
      bound.push(path.join(warm.shareDir, name));
      bindRoot(bound.at(-1)!, source);
    };
    // Once QEMU is gone: what was bound into its share, then the run directory (and TAP).
    const discardWarm = () => {
      warm.vm.stop();
      void warm.vm.waitExit().then(() => (bound.forEach((t) => unbindRoot(t)), warm.discard()));
    };
    try {
      if (opts.disks) {
        if (!warm.attachDisks) throw new Error('the pool VM has no disks');
        await warm.attachDisks(opts.disks.files);
        // A root on disks with binds (a pool VM of the disks+share shape): each bind goes
        // under the share by the name the agent binds it from, as a clone's share has it.
        for (const b of opts.disks.binds) bindIntoShare(b.source, path.join(opts.rootfs, b.source));
      } else {
        bindIntoShare(WARM_SUBDIR, opts.rootfs);
        subdir = WARM_SUBDIR;
      }
      await warm.vm.resume();
      vm = warm.vm;
      mode = 'pool';
      cleanup = discardWarm;
    } catch (err) {
      fallbackReason = `warm pool: ${(err as Error).message}`;
      discardWarm();
    }
    mark('vm');
  }
  if (opts.clone && !vm) {
    try {
      vm = await driver.clone({ runDir: opts.runDir, shape: opts.shape, rootDir: opts.rootfs, net: opts.net, disks: opts.disks?.files });
      mode = 'clone';
      cleanup = stopAndRemove(vm, opts.runDir);
      mark('vm');
    } catch (err) {
      fallbackReason = (err as Error).message;
    }
  }
  if (!vm) {
    vm = driver.launch({ runDir: opts.runDir, shape: opts.shape, rootDir: opts.rootfs, net: opts.net, disks: opts.disks?.files });
    cleanup = stopAndRemove(vm, opts.runDir);
    mark('vm');
  }
  const started = vm;
  try {
    const agent = await connectAgent(started, opts.bootTimeoutMs, mode);
    mark('boot');
    const builtin = driver.builtinNetwork;
    const network: GuestNetwork | undefined = opts.net.restrict
      ? undefined
      : (opts.guestNet ?? { ipv4: `${builtin.guest}/${builtin.prefix}`, gateway: builtin.gateway, dns: builtin.dns });
    const sandbox = new Sandbox(started, agent, { mode, accel: opts.shape.accel, phases, fallbackReason }, rootTag ?? '', cleanup);
    try {
      await agent.configure({ hostname: opts.hostname, seed: randomBytes(64), network, memoryLimit: opts.memoryLimit });
      mark('configure');
      const hostGateway = opts.guestNet ? network?.gateway : (builtin.hostGateway ?? network?.gateway);
      if (opts.disks) await agent.mountRoot(rootTag ?? '', ROOT_NAME, undefined, opts.tmpfs, { hosts: opts.hosts?.(hostGateway), ...diskFields(driver.layoutFor(opts.shape), opts.disks) });
      else if (!opts.noRoot) await agent.mountRoot(rootTag!, ROOT_NAME, subdir, opts.tmpfs, { hosts: opts.hosts?.(hostGateway) });
      mark('mount');
    } catch (err) {
      sandbox.release();
      throw err;
    }
    return sandbox;
  } catch (err) {
    cleanup();
    throw err instanceof Error && 'kind' in err ? err : internal(`VM failed to start: ${(err as Error).message}`);
  }
}

/** The MOUNT_ROOT fields of a root on disks: which disk is which (by serial), the binds, read-only. */
function diskFields(layout: DeviceLayout, disks: NonNullable<SandboxOptions['disks']>): MountOptions {
  const serial = (role: 'lower' | 'upper') => {
    const disk = layout.disks?.find((d) => d.role === role);
    if (!disk) throw internal(`the device layout has no ${role} disk`);
    return disk.serial;
  };
  // A copy of the template's pre-mounted upper: the agent takes the mount it has (a cold boot has none, and mounts the disk).
  const premounted = !!disks.files.premountedFrom;
  return { block: { lower: serial('lower'), upper: serial('upper'), discardOnExit: disks.discardOnExit, premounted }, binds: disks.binds, readonly: disks.readonly };
}

/** Waits for the agent's hello, or for the VM to die trying. */
async function connectAgent(vm: VmHandle, timeoutMs: number, mode: string, adopt?: number[]): Promise<AgentConnection> {
  let onExit: (() => void) | undefined;
  const died = new Promise<never>((_, reject) => {
    onExit = () => reject(internal(`VM exited during boot: ${vm.diagnostics(600) || 'no output'}`));
    vm.once('exit', onExit);
  });
  try {
    return await Promise.race([
      AgentConnection.connect(vm.controlSocket, { timeoutMs, adopt }).catch((err: Error) => {
        throw internal(`${err.message} (${mode}); console: ${vm.diagnostics(400) || 'empty'}`);
      }),
      died,
    ]);
  } finally {
    vm.off('exit', onExit!);
  }
}
