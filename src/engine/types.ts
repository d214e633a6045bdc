import type { StartInfo } from '../sandbox/sandbox.js';
import type { Endpoint } from './net/networks.js';
import type { PortMap } from './ports.js';
import type { MountPoint, MountRequest } from './storage.js';

export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface ContainerSpec {
  Image: string;
  Cmd: string[];
  Entrypoint: string[];
  Env: string[];
  WorkingDir: string;
  User: string;
  Hostname: string;
  Tty: boolean;
  OpenStdin: boolean;
  StdinOnce: boolean;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  Labels: Record<string, string>;
  StopSignal: string;
  StopTimeout?: number;
  ExposedPorts?: Record<string, object>;
  /** The MAC address asked for (bridge networks; otherwise Docker's 02:42 + IPv4 one). */
  MacAddress?: string;
}

export interface HostSpec {
  AutoRemove: boolean;
  /** Guest memory in bytes (0: engine default). */
  Memory: number;
  NanoCpus: number;
  ConsoleSize?: [number, number];
  RestartPolicy: RestartPolicy;
  /** Docker's json-file options: max-size, max-file. */
  LogConfig?: { Type: string; Config: Record<string, string> };
  Binds?: string[];
  Mounts?: MountRequest[];
  Tmpfs?: Record<string, string>;
  ReadonlyRootfs?: boolean;
  /** `--add-host NAME:IP` (IP may be `host-gateway`): extra /etc/hosts lines. */
  ExtraHosts?: string[];
  /** `size`: the writable layer's size (`--storage-opt size=10G`; default 10 GiB for a writable disk). */
  StorageOpt?: Record<string, string>;
  /** "" / default / bridge (user-mode network) or none. */
  NetworkMode?: string;
  PortBindings?: PortMap;
  PublishAllPorts?: boolean;
  /** Capabilities added to or dropped from Docker's default set (names as given, validated). */
  CapAdd?: string[];
  CapDrop?: string[];
  /** Every capability and an unmasked /proc. */
  Privileged?: boolean;
  /** `--init`: a small init as PID 1 forwards signals to the process and reaps orphans. */
  Init?: boolean;
  /** Extra groups of the container's processes (names from the image's /etc/group, or numbers). */
  GroupAdd?: string[];
  /** Containers whose volumes and bind mounts this one mounts too ("NAME[:ro|:rw]"). */
  VolumesFrom?: string[];
  /** Legacy links ("NAME:ALIAS"): /etc/hosts names for the linked containers' addresses. */
  Links?: string[];
}

export interface RestartPolicy {
  Name: '' | 'no' | 'always' | 'unless-stopped' | 'on-failure';
  MaximumRetryCount: number;
}

export interface ContainerState {
  Status: ContainerStatus;
  Running: boolean;
  Paused: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  OOMKilled: boolean;
  StartedAt: string;
  FinishedAt: string;
}

export interface ContainerRecord {
  Id: string;
  Name: string;
  Created: string;
  ImageRef: string;
  ImageId: string;
  Config: ContainerSpec;
  HostConfig: HostSpec;
  State: ContainerState;
  StartInfo?: StartInfo;
  /** Restarts done by the restart policy since the last user start. */
  RestartCount?: number;
  /** Set by stop/kill from a user: "unless-stopped" and "always" then stay down
   * (until the daemon restarts, for "always", as in Docker). */
  ManuallyStopped?: boolean;
  /** PID of the QEMU process while running. */
  VmPid?: number;
  /** The running VM's run directory (sockets) and the agent's id of the main
   * process: what a restarted daemon needs to re-attach (live restore). */
  VmRunDir?: string;
  MainProcId?: number;
  /** Set when the agent keeps the main process's output until acknowledged: this
   * start's run id, which marks its log records (logs.ts, log-acks.ts). */
  MainLogRun?: string;
  /** The pod whose VM this container runs in. */
  PodId?: string;
  /** Extra names on a user-defined network (`--network-alias`). */
  NetworkAliases?: string[];
  /** The VM's address and TAP on a user-defined network, while it runs. */
  Endpoint?: Endpoint;
  /** Volumes, binds and tmpfs mounts, resolved at create. */
  MountPoints?: MountPoint[];
  /** Where its root lives, chosen at create (`--storage-driver`): a 9p share of a host overlay (absent: 9p), or disks. */
  Storage?: '9p' | 'block';
  /** Size of the container's writable disk (`--storage-opt size`, else 10 GiB), fixed at create.
   * Absent in records of earlier versions: diskBytesOf(HostConfig) then. */
  DiskBytes?: number;
  /** Published ports of the current (or last) run. */
  Ports?: PortMap;
}

export const NULL_TIME = '0001-01-01T00:00:00Z';
