/**
 * Container roots on block devices (`hyperboxd --storage-driver block`, issue
 * 14): the image's filesystem, built once per image on the host (read-only,
 * shared by all its containers), and a writable disk per container; the guest
 * assembles the root with overlayfs. The host never mounts either: what the
 * guest wrote stays the guest's. Volumes and host binds stay directories on
 * the host, bound under `<container>/binds/<n>` and shared with the guest over
 * 9p; a container without any has no 9p device at all.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { invalid } from '../common/errors.js';
import { isMountPoint } from '../common/mounts.js';
import { allocatedBytes, containerDiskPath, DEFAULT_DISK_BYTES } from '../images/blockfs.js';
import { HOST_SIDE_FLAGS } from '../images/rootfs.js';
import type { GuestShape, RootDisks, WarmVm } from '../vm/index.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { diskBytesOf } from './create-spec.js';
import { run, seedVolume } from './storage.js';

/** What the guest needs to assemble a root on disks. */
export interface DiskRoot {
  disks: RootDisks;
  /** The 9p share holding the binds (undefined: no binds, no share). */
  shareDir?: string;
  /** The share's entries bound inside the root. */
  binds: Array<{ source: string; dest: string; readonly?: boolean }>;
  /** tmpfs mounts, as "/path[:opts]". */
  tmpfs: string[];
  readonly: boolean;
  /**
   * A new container's disk of the default size, not made yet: provideFreshDisk
   * makes it (the blank ext4 it would be a copy of).
   */
  fresh?: { blank: string; bytes: number };
}

/** Whether C's root lives on disks (recorded at create: a container keeps the storage it was made with). */
export function onDisks(c: Container): boolean {
  return c.record.Storage === 'block';
}

const bindsDir = (c: Container) => path.join(c.dir, 'binds');

/** Builds (or reuses) the image filesystem and the container's disk, and binds its volumes for the share. */
export async function prepareDiskRoot(ctx: EngineContext, c: Container): Promise<DiskRoot> {
  const image = ctx.store.resolve(c.record.ImageId);
  const imageDir = await ctx.rootfs.imageRootfs(image);
  const lower = await ctx.blocks.ensureImageFs(image);
  const bytes = c.record.DiskBytes ?? diskBytesOf(c.record.HostConfig);
  const upper = containerDiskPath(c.dir);
  // A new disk of the default size waits for its VM (provideFreshDisk); any other is made (or found) now.
  const fresh = bytes === DEFAULT_DISK_BYTES && !fs.existsSync(upper) ? { blank: await ctx.blocks.ensureBlank(bytes), bytes } : undefined;
  if (!fresh) await ctx.blocks.ensureContainerDisk(c.dir, bytes);
  releaseDiskRoot(c);
  const binds: DiskRoot['binds'] = [];
  const tmpfs: string[] = [];
  const mounts = [...(c.record.MountPoints ?? [])].sort((a, b) => a.Destination.split('/').length - b.Destination.split('/').length);
  try {
    mounts.forEach((m, i) => {
      if (m.Type === 'tmpfs') return void tmpfs.push(`${m.Destination}${m.TmpfsOptions ? `:${m.TmpfsOptions}` : ''}`);
      if (m.Type === 'volume') seedVolume(imageDir, m);
      const st = fs.statSync(m.Source, { throwIfNoEntry: false });
      if (!st) throw invalid(`bind source path does not exist: ${m.Source}`);
      const target = path.join(bindsDir(c), String(i));
      fs.mkdirSync(bindsDir(c), { recursive: true, mode: 0o700 });
      if (st.isDirectory()) fs.mkdirSync(target);
      else fs.writeFileSync(target, '', { mode: 0o600 });
      run('mount', ['--no-canonicalize', '--bind', m.Source, target]);
      run('mount', ['--no-canonicalize', '-o', `remount,bind,${HOST_SIDE_FLAGS}${m.RW ? '' : ',ro'}`, target]);
      binds.push({ source: String(i), dest: m.Destination, readonly: !m.RW });
    });
  } catch (err) {
    releaseDiskRoot(c);
    throw err;
  }
  return {
    disks: { lower, upper },
    shareDir: binds.length ? bindsDir(c) : undefined,
    binds,
    tmpfs,
    readonly: !!c.record.HostConfig.ReadonlyRootfs,
    fresh,
  };
}

/**
 * Makes a new container's disk (ROOT.fresh) and picks the shape of its VM.
 * With clones (TAKE given): a copy of the upper disk that the template of
 * SHAPE with a pre-mounted upper has mounted, the pool VM's own copy if one
 * is ready (TAKE), so the VM resumes with its ext4 mounted; that shape is then
 * the VM's. Else (no clones, or that failed) a copy of the blank, and SHAPE
 * as it is. Returns the shape and the pool VM taken for it, if any.
 */
export async function provideFreshDisk(
  ctx: EngineContext,
  c: Container,
  root: DiskRoot,
  shape: GuestShape,
  take?: (shape: GuestShape) => WarmVm | undefined,
): Promise<{ shape: GuestShape; warm?: WarmVm }> {
  const fresh = root.fresh;
  if (!fresh) return { shape, warm: take?.(shape) };
  root.fresh = undefined;
  const dest = root.disks.upper;
  if (take) {
    const premounted = { ...shape, premountUpper: fresh.blank };
    const warm = take(premounted);
    try {
      if (warm?.upperDisk) {
        fs.linkSync(warm.upperDisk.file, dest); // the pool VM's disk becomes the container's
        root.disks.premountedFrom = warm.upperDisk.premountedFrom;
        return { shape: premounted, warm };
      }
      warm?.discard(); // not one with a pre-mounted disk: cannot serve this start
      root.disks.premountedFrom = await ctx.driver.copyPremountedUpper(premounted, dest);
      return { shape: premounted };
    } catch (err) {
      ctx.logger.warn(`container ${c.id.slice(0, 12)}: no pre-mounted disk (${(err as Error).message}); a blank one instead`);
      warm?.discard();
      root.disks.premountedFrom = undefined;
      fs.rmSync(dest, { force: true }); // it did not exist before this start (fresh)
    }
  }
  await ctx.blocks.ensureContainerDisk(c.dir, fresh.bytes);
  return { shape, warm: take?.(shape) };
}

/** Bytes the container's writable disk takes on the host (allocated, not its apparent size). */
export function diskBytes(containerDir: string): number {
  return fs.existsSync(containerDiskPath(containerDir)) ? allocatedBytes(containerDiskPath(containerDir)) : 0;
}

/** Unbinds the container's volumes from its share directory (the VM is gone or going). */
export function releaseDiskRoot(c: Container): void {
  const dir = bindsDir(c);
  if (!fs.existsSync(dir)) return;
  // The VM's jail may have bound the directory onto itself (with copies of the binds): that goes first.
  unmountAll(dir, ['-R']);
  for (const name of fs.readdirSync(dir)) unmountAll(path.join(dir, name), []);
  if (!fs.readdirSync(dir).some((n) => isMountPoint(path.join(dir, n)))) fs.rmSync(dir, { recursive: true, force: true });
}

/** Unmounts whatever is mounted at P (mounts may be stacked there), lazily if busy. */
function unmountAll(p: string, flags: string[]): void {
  for (let i = 0; i < 8 && isMountPoint(p); i++) {
    try {
      execFileSync('umount', [...flags, p], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync('umount', ['-l', p], { stdio: 'ignore' });
      } catch {
        return; // not ours to force
      }
    }
  }
}
