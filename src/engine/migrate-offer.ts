/**
 * What a live migration's source tells its destination up front (the offer),
 * and the checks both sides make of it: the guest must be the same shape on
 * both hosts (kernel and agent, QEMU, accelerator, device layout), and the
 * image's filesystem the destination builds must be the source's, block for
 * block (the guest has it mounted and cached).
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { invalid } from '../common/errors.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import type { ContainerRecord } from './types.js';

/** What must be equal on both hosts for a guest to move between them. */
export interface GuestProfile {
  /** Kernel and initrd (the agent) fingerprint. */
  assets: string;
  qemu: string;
  accel: string;
  /** Device layout revision. */
  layout: number;
}

export const offerSchema = z.object({
  Record: z
    .object({
      Id: z.string().regex(/^[0-9a-f]{64}$/),
      Name: z.string().regex(/^\/[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/),
      ImageId: z.string().regex(/^sha256:[0-9a-f]{64}$/),
      MainProcId: z.number().int().positive(),
      Storage: z.literal('block'),
      // What the source refuses to move, refused here too (the record is kept as it is).
      PodId: z.undefined().optional(),
      MountPoints: z.array(z.object({ Type: z.literal('tmpfs') }).passthrough()).optional(),
    })
    .passthrough(),
  Guest: z.object({ assets: z.string().max(128), qemu: z.string().max(64), accel: z.string().max(16), layout: z.number().int() }).strict(),
  MemoryMiB: z.number().int().min(64).max(1 << 20),
  Cpus: z.number().int().min(1).max(64),
  /** The source's RAM is the `mem` backend (a clone's), not the machine's default. */
  RamBackend: z.boolean(),
  UpperBytes: z.number().int().min(1 << 20).max(2 ** 44),
  LowerDigest: z.string().regex(/^[0-9a-f]{64}$/),
  Source: z.string().max(64),
  /** The bridge network it is on: the default one, or a user-defined one that must exist by that name at the destination. */
  Network: z
    .object({ Name: z.string().max(128), Default: z.boolean(), IPAddress: z.ipv4() })
    .strict()
    .optional(),
});
export type Offer = z.infer<typeof offerSchema>;

export function profileOf(ctx: EngineContext): GuestProfile {
  const shape = ctx.guestShape();
  return { assets: shape.assets.fingerprint, qemu: ctx.driver.version, accel: shape.accel, layout: ctx.driver.layoutFor({ ...shape, root: 'disks' }).revision };
}

/** Throws naming every difference between the source's guest and this host's. */
export function checkProfile(theirs: GuestProfile, ours: GuestProfile): void {
  const names: Record<keyof GuestProfile, string> = { assets: 'guest kernel/agent', qemu: 'QEMU version', accel: 'accelerator', layout: 'device layout revision' };
  const diff = (Object.keys(names) as Array<keyof GuestProfile>).filter((k) => theirs[k] !== ours[k]);
  if (diff.length) {
    throw invalid(`cannot migrate here: the guest differs (${diff.map((k) => `${names[k]}: source ${String(theirs[k]).slice(0, 16)}, here ${String(ours[k]).slice(0, 16)}`).join('; ')})`);
  }
}

/** The VM's memory and vCPUs, as the start path sized them (start-vm.ts). */
export function vmSizeOf(ctx: EngineContext, record: Pick<ContainerRecord, 'HostConfig'>): { memoryMiB: number; cpus: number } {
  const hc = record.HostConfig;
  const shape = ctx.guestShape(hc.Memory ? Math.max(128, Math.ceil(hc.Memory / 1048576) + 64) : undefined, Math.max(1, Math.ceil(hc.NanoCpus / 1e9)));
  return { memoryMiB: shape.memoryMiB, cpus: shape.cpus };
}

/**
 * Why C cannot move live, or undefined. QEMU refuses to migrate a VM with a
 * 9p share; a pod's VM is not the container's alone; legacy links name
 * containers of this host.
 */
export function whyNotMigratable(c: Container): string | undefined {
  const hc = c.record.HostConfig;
  if (c.record.PodId) return `container ${c.shortName} is in a pod: a pod's VM is shared, it cannot move one member`;
  if (c.record.Storage !== 'block') return `container ${c.shortName} has its root on a 9p share (--storage-driver overlay): QEMU cannot migrate a VM with a 9p device`;
  if ((c.record.MountPoints ?? []).some((m) => m.Type !== 'tmpfs')) {
    return `container ${c.shortName} has volumes or bind mounts: they are 9p shares of host directories, and QEMU cannot migrate a VM with a 9p device`;
  }
  if (hc.NetworkMode?.startsWith('container:')) return `container ${c.shortName} shares the network of ${hc.NetworkMode.slice(10)}: it cannot move without it`;
  if (hc.Links?.length) return `container ${c.shortName} has --link entries: they name containers of this host`;
  if (!c.running || !c.sandbox) return `container ${c.shortName} is not running: only a running container moves live (a stopped one: commit or export it, and create it there)`;
  if (c.record.State.Paused) return `container ${c.shortName} is paused: unpause it first`;
  if (!c.sandbox.vm.migrateOut) return 'this VM driver cannot migrate';
  return undefined;
}

/**
 * sha256 of an erofs image without what two mkfs.erofs runs on one image make
 * differ: the superblock's checksum, build time and UUID, and the root
 * directory's mtime (the unpacked tree's root is made at unpack time; a
 * container never sees it, overlayfs shows its upper directory's). Equal
 * digests: the same filesystem, block for block, where the guest reads it.
 */
export async function erofsDigest(file: string): Promise<string> {
  const masked: Array<[number, number]> = [
    [1028, 1032],
    [1048, 1060],
    [1072, 1088],
  ];
  const sb = Buffer.alloc(2048);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, sb, 0, sb.length, 0);
    // The root inode: at meta_blkaddr * block size + root_nid * 32; an extended one (i_format bit 0) has its mtime at 32..44.
    const root = sb.readUInt32LE(1064) * 2 ** sb[1036]! + sb.readUInt16LE(1038) * 32;
    const format = Buffer.alloc(2);
    fs.readSync(fd, format, 0, 2, root);
    if (format.readUInt16LE(0) & 1) masked.push([root + 32, root + 44]);
  } finally {
    fs.closeSync(fd);
  }
  const hash = createHash('sha256');
  let offset = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    for (const [from, to] of masked) {
      const a = Math.max(from - offset, 0);
      const b = Math.min(to - offset, chunk.length);
      if (a < b) chunk.fill(0, a, b);
    }
    hash.update(chunk);
    offset += chunk.length;
  }
  return hash.digest('hex');
}
