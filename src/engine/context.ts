/**
 * What the engine's services share: the stores, the registry, the event bus
 * and the VM driver, built once by engine.ts. Services receive this (and each
 * other) instead of reaching into a god object.
 */
import type { Logger } from '../common/logger.js';
import type { BlockStorage } from '../images/blockfs.js';
import type { RootfsBuilder } from '../images/rootfs.js';
import type { ContentStore } from '../images/store.js';
import type { AccelDecision, GuestShape, VmDriver } from '../vm/index.js';
import type { EventBus } from './events.js';
import type { MetadataStore } from './metadata.js';
import type { NetworkManager } from './net/networks.js';
import type { PodManager } from './pods.js';
import type { ContainerRegistry } from './registry.js';
import type { VolumeStore } from './volumes.js';

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
  driver: VmDriver;
  /** The default bridge's subnet (`--bip`), as root. */
  defaultSubnet?: string;
  /** False (`--bridge none`): the default network stays the driver's user-mode network even as root. */
  defaultBridge?: boolean;
  /** Where new containers' roots live: a 9p share of a host overlay (default), or disks (`--storage-driver block`). */
  storageDriver?: '9p' | 'block';
}

export interface EngineContext {
  readonly opts: EngineOptions;
  readonly logger: Logger;
  readonly driver: VmDriver;
  readonly store: ContentStore;
  readonly rootfs: RootfsBuilder;
  /** Image filesystems and containers' writable disks (block-device roots). */
  readonly blocks: BlockStorage;
  readonly volumes: VolumeStore;
  readonly metadata: MetadataStore;
  readonly registry: ContainerRegistry;
  readonly events: EventBus;
  readonly networks: NetworkManager;
  readonly pods: PodManager;
  readonly containersDir: string;
  /** Run directories of VMs (sockets, logs). */
  readonly runRoot: string;
  /** The daemon is stopping: no restarts are scheduled. */
  readonly shuttingDown: boolean;
  /** The guest shape for this much memory and these vCPUs (the current kernel and agent). */
  guestShape(memoryMiB?: number, cpus?: number): GuestShape;
}
