/**
 * The VM layer's contract: what the layers above (the sandbox library, the
 * engine) may know about virtual machines. A driver boots guests of a given
 * shape with a fixed device layout, clones them from templates, keeps a warm
 * pool, and re-finds VMs that outlived the daemon. QEMU (`./qemu/`) is one
 * implementation; nothing outside src/vm/ imports it (test/unit/layers.test.ts
 * fails if something does).
 */
import type { EventEmitter } from 'node:events';
import type { GuestAssets } from './assets.js';

export type Accel = 'kvm' | 'tcg';

/** Everything that shapes a booted guest: one template per shape. */
export interface GuestShape {
  assets: GuestAssets;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  /**
   * How the container root reaches the guest: a 9p share of a host directory
   * (the default), or two disks (the image's read-only filesystem and the
   * container's writable one), with or without a 9p share for host binds.
   */
  root?: 'share' | 'disks' | 'disks+share';
  /**
   * A shape with disks only: a blank ext4 file whose copy the template boots
   * with as its upper disk, mounted ahead by its agent before the snapshot.
   * Its clones and pool VMs then resume with their own copy of the template's
   * disk already mounted; such a VM serves only a new container whose disk is
   * that copy (see VmDriver.copyPremountedUpper).
   */
  premountUpper?: string;
}

/**
 * The devices every VM of a driver has, as data. Clones must have their
 * template's layout, so it is part of every template's key; a change here
 * retires all templates.
 */
export interface DeviceLayout {
  /** Bumped whenever the device line changes in a way the fields below do not show. */
  revision: number;
  console: 'serial';
  /** The agent's control channel: transport and port name. */
  control: { transport: 'virtio-serial'; port: string };
  rng: 'virtio-rng';
  /** One NIC, always present (a clone restores its state). */
  nic: 'virtio-net';
  /** Shared directories, by 9p mount tag: the first carries the container root(s), or host binds. */
  shares: Array<{ tag: string; transport: 'virtio-9p' }>;
  /** Block devices, by the serial the guest finds them by: the root's lower (read-only) and upper disks. */
  disks?: Array<{ serial: string; role: 'lower' | 'upper'; transport: 'virtio-blk' }>;
}

/** A published port forwarded by the VM's built-in network to the guest. */
export interface PortForward {
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** The backend of a VM's one NIC. */
export interface NetSpec {
  /** Ports of the built-in (NAT) network forwarded to the guest. */
  forwards: PortForward[];
  /** No traffic to or from the outside (`--network none`). */
  restrict?: boolean;
  /** A TAP device on a bridge network instead of the built-in network. */
  tap?: string;
  /** The network namespace (a path, e.g. one CNI prepared) QEMU runs in and finds its TAP in. */
  netns?: string;
}

/** Addresses of a driver's built-in NAT network, as the guest must configure them. */
export interface BuiltinNetwork {
  subnet: string;
  guest: string;
  prefix: number;
  gateway: string;
  dns: string;
  /** Where the guest reaches the host (`--add-host NAME:host-gateway`) when that is not GATEWAY. */
  hostGateway?: string;
}

export interface HostUsage {
  rssBytes: number;
  cpuNs: number;
  readBytes: number;
  writeBytes: number;
}

export type VmState = 'running' | 'paused' | 'exited';

/** A write the host could not complete, so QEMU paused the VM (a full host filesystem under a disk). */
export interface VmIoError {
  /** The disk's node (`upper`: the container's writable disk). */
  node: string;
  /** The host's error was ENOSPC. */
  nospace: boolean;
  reason: string;
}

/**
 * The hypervisor's own word on a VM's vCPUs (not what the host last asked for):
 * running, paused by the host, stopped on a disk write the host could not complete
 * (a full host filesystem: `resume()` retries it), or something else (a migration,
 * a crashed guest).
 */
export type VmRunState = { state: 'running' | 'paused' | 'other'; detail: string } | { state: 'io-error'; detail: string; error: VmIoError };

export interface VmEvents {
  exit: [code: number | null, signal: NodeJS.Signals | null];
  /** The VM paused itself on a disk write error; `resume()` retries the write. */
  'io-error': [error: VmIoError];
}

/** One running (or paused) VM. */
export interface VmHandle extends EventEmitter<VmEvents> {
  /** Host process id of the VM (for `inspect`, live restore). */
  readonly pid: number;
  /** The VM's own run directory (sockets, logs); recorded for live restore. */
  readonly runDir: string;
  /** Unix socket of the agent's control channel. */
  readonly controlSocket: string;
  readonly exited: boolean;
  readonly state: VmState;
  /** Stops the vCPUs (memory kept). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Asks the hypervisor what the vCPUs are doing (a VM adopted after a daemon restart may have stopped itself). */
  runState(): Promise<VmRunState>;
  /** Ends the VM now (no guest shutdown). */
  stop(): void;
  waitExit(): Promise<void>;
  /** What the VM costs the host (memory, CPU, I/O). */
  hostUsage(): HostUsage;
  /** The tail of the VM's own log and console, for error messages. */
  diagnostics(maxBytes?: number): string;
  /**
   * Live migration out (a root on disks, no shares): the writable disk and the
   * RAM go to the sockets the caller listens on; on success the VM is stopped
   * here, on failure it runs on. `cancelMigration` undoes one that completed.
   */
  migrateOut?(sockets: MigrationSockets, timeoutMs: number): Promise<MigrationStats>;
  cancelMigration?(): Promise<void>;
}

/** Unix sockets of a live migration: RAM and device state, and the writable disk (NBD). */
export interface MigrationSockets {
  ram: string;
  disk: string;
}

export interface MigrationStats {
  /** From the start to the switch-over. */
  totalMs: number;
  /** Until the disk mirror was in step (before RAM started). */
  diskSyncMs: number;
  /** How long the guest was stopped, as QEMU measured it. */
  downtimeMs: number;
  ramBytes: number;
}

/** A VM waiting for a live migration: its QEMU listens on SOCKETS; finish() waits for the end (the VM is left paused). */
export interface IncomingVm {
  vm: VmHandle;
  sockets: MigrationSockets;
  finish(timeoutMs: number): Promise<void>;
}

/** A VM for an incoming live migration: the source's RAM layout (a clone's RAM is the `mem` backend) and disks. */
export interface IncomingRequest extends LaunchRequest {
  ramBackend: boolean;
}

export interface LaunchRequest {
  /** Run directory for this VM (kept short: unix socket paths are limited to 107 bytes). */
  runDir: string;
  shape: GuestShape;
  /** Host directory shared as the root share (the layout's first share), when the shape has one. */
  rootDir: string;
  net?: NetSpec;
  /** The root's disk images, when the shape has disks: the image's filesystem (read-only) and the container's. */
  disks?: RootDisks;
}

export interface RootDisks {
  lower: string;
  upper: string;
  /** The key of the template whose pre-mounted upper disk UPPER is a copy of (shapes with `premountUpper`). */
  premountedFrom?: string;
}

/** A pre-started clone from the warm pool, paused, with an empty share. */
export interface WarmVm {
  vm: VmHandle;
  /** The NIC backend it was started with (a TAP of the pool's, or the built-in network without forwards). */
  net: NetSpec;
  /** The VM's share (an empty directory): the caller binds a root, or a root on disks' binds, under it. */
  shareDir: string;
  /** Stops the VM and removes its run directory (never through a mount). */
  discard(): void;
  /**
   * A pool VM of a shape with disks (it started on placeholders): puts DISKS
   * behind its disks, before it resumes. Fails if QEMU cannot reach them.
   */
  attachDisks?(disks: RootDisks): Promise<void>;
  /**
   * A pool VM of a shape with `premountUpper`: its own upper disk file, a copy
   * of its template's, mounted in the guest already. The container's disk must
   * be this file (a hard link to it), and attachDisks then swaps the lower only.
   */
  upperDisk?: { file: string; premountedFrom: string };
}

/** Makes a TAP for a pool VM (not on any bridge yet) and deletes it when asked. */
export interface PoolNetProvider {
  create(): string;
  remove(tap: string): void;
}

export interface TemplateInfo {
  key: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  created: string;
  bootMs: number;
}

export interface VmDriver {
  readonly name: string;
  /** Version of the hypervisor, e.g. "QEMU emulator version 7.2.19". */
  readonly version: string;
  readonly layout: DeviceLayout;
  /** The device layout of a shape (disks and shares depend on how its root is attached). */
  layoutFor(shape: GuestShape): DeviceLayout;
  readonly builtinNetwork: BuiltinNetwork;

  /** Cold boot. */
  launch(req: LaunchRequest): VmHandle;
  /**
   * An instant clone of the shape's template (made first if missing), running
   * or left paused. A template found corrupt is dropped before this throws, so
   * the next clone builds a good one.
   */
  clone(req: LaunchRequest & { paused?: boolean }): Promise<VmHandle>;
  /** Starts a VM that waits, paused, for a live migration into it (see VmHandle.migrateOut). */
  launchIncoming?(req: IncomingRequest): Promise<IncomingVm>;
  /**
   * A ready paused clone from the warm pool whose NIC backend is of KIND (a
   * TAP, or the built-in network without forwards), if one is; the pool
   * refills itself.
   */
  takeWarm(shape: GuestShape, kind: 'tap' | 'builtin'): WarmVm | undefined;
  /**
   * Where new pool VMs get their NIC: a TAP from PROVIDER (released when the VM
   * is discarded), or the built-in network when there is none.
   */
  setPoolNet(provider: PoolNetProvider | undefined): void;
  /**
   * For a shape with `premountUpper`: writes DEST (mode 0600, new) as a copy
   * of the upper disk its template mounted ahead (the template is made first
   * if missing); returns the template's key, for RootDisks.premountedFrom.
   */
  copyPremountedUpper(shape: GuestShape, dest: string): Promise<string>;
  /** Starts warm pool VMs for a shape (no-op without a pool). */
  fillPool(shape: GuestShape): void;
  /** Warm-pool VMs kept per shape, how many are ready now (all shapes), and the shapes that have a pool. */
  readonly poolSize: number;
  readonly poolReady: number;
  readonly poolShapes: number;
  /** Stops the warm pool. */
  drainPool(): Promise<void>;
  /** Daemon shutdown: the warm pool and template guests still booting are stopped. */
  close(): Promise<void>;

  /** A VM an earlier process started (live restore), if PID still is that VM. */
  adopt(pid: number, runDir: string): VmHandle | undefined;
  /** Whether PID is the live VM of RUNDIR (sweeping VMs nobody owns). */
  isLive(pid: number, runDir: string): boolean;
  /** The pid recorded in a run directory, if a VM was started there. */
  recordedPid(runDir: string): number | undefined;
  /** Undoes what the host holds for the VM of RUNDIR (its confinement: mounts, cgroup) once it is gone or killed. */
  releaseRunDir(runDir: string): void;

  templates: {
    list(): TemplateInfo[];
    ensure(shape: GuestShape): Promise<TemplateInfo>;
    remove(key: string): boolean;
    /** Deletes templates made from other guest assets or another hypervisor build. */
    removeStale(current: GuestAssets): string[];
  };
}
