/**
 * Container roots on block devices, host side: the files the VM gets as disks.
 *
 *  - **Image filesystems.** Each image's unpacked root (rootfs.ts) becomes one
 *    read-only erofs image, built once by `mkfs.erofs` from that directory and
 *    shared by every container of the image (the guest puts the container's
 *    writable disk on top with overlayfs). Stored beside the unpacked root, as
 *    `<data-root>/rootfs/<image id hex>/image-<key>.erofs`, where KEY hashes
 *    the image ID, its layer chain (diff_ids) and this build's format: a
 *    changed source or format gives a new name, the old file is dropped. Built
 *    into a temporary name and published by rename(); concurrent requests for
 *    one image share one build. `rmi` removes it with the image's directory.
 *    mkfs.erofs keeps owners, modes (setuid bits), mtimes, device nodes, FIFOs,
 *    hard links and extended attributes (`user.*`, file capabilities) from the
 *    directory; it is never given `--all-root`/`--force-uid` or `-T` (a fixed
 *    time in erofs-utils 1.5 replaces every file's mtime). No compression:
 *    reads cost no guest CPU, and the image is built once per host.
 *  - **Writable disks.** Each container gets a sparse ext4 file,
 *    `<data-root>/containers/<id>/disk.ext4`, of the size `--storage-opt size=`
 *    asked for (DEFAULT_DISK_BYTES otherwise), made on first start by copying
 *    a blank ext4 of that size formatted once per size
 *    (`<data-root>/blockfs/blank-ext4-<bytes>-<format>.img`) with
 *    `cp --sparse=always` (about 9 ms for 10 GiB here, against 20-27 ms for a
 *    fresh mkfs.ext4, which also grows with the size), or rather by taking the
 *    copy made ahead while the previous container of that size started. The blank's inode tables
 *    are zeroed at mkfs time (lazy_itable_init=0, flagged ITABLE_ZEROED), so the
 *    guest kernel never zeroes them in the background, and the zeroes stay
 *    holes in every copy.
 *
 * Every file is root's, mode 0600 (QEMU runs as root in its jail). The host
 * never mounts any of them: an erofs image is written only by mkfs.erofs here,
 * and a container's disk is written only by its guest.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { internal, invalid } from '../common/errors.js';
import { copyViaSpare, publish, seal, temporaryName } from '../common/published-files.js';
import type { Image } from './store.js';

const run = promisify(execFile);

/** The writable disk's size without `--storage-opt size=` (as Docker's devicemapper's base size). */
export const DEFAULT_DISK_BYTES = 10 * 1024 ** 3;
/** Smallest writable disk: an ext4 with a journal and room for a few files. */
export const MIN_DISK_BYTES = 16 * 1024 ** 2;
/** Largest: the largest file the host's ext4 (4 KiB blocks) can hold. */
export const MAX_DISK_BYTES = 16 * 1024 ** 4 - 4096;

/** The name of a container's writable disk in its directory. */
export const DISK_FILE = 'disk.ext4';
const DISK_RE = /^disk\.ext4$/;

/**
 * mkfs.erofs arguments. `--preserve-mtime`: each file keeps its own mtime.
 * Changing these changes EROFS_FORMAT, so existing images are rebuilt.
 */
const EROFS_ARGS = ['--quiet', '--preserve-mtime'];
const EROFS_FORMAT = `erofs-1 ${EROFS_ARGS.join(' ')}`;

/**
 * mkfs.ext4 arguments for a blank writable disk: no reserved blocks, root's
 * root directory, inode tables zeroed now (holes in a sparse file cost nothing,
 * and the guest then never runs its lazy zeroing), a journal whose blocks are
 * the file's holes (zeroes) already, and no resize inode (its reserved GDT
 * blocks were 4 MB of a 10 GiB disk's 4.3; without them a new disk takes
 * about 240 KB of host disk). Debian 12's mke2fs defaults (metadata_csum,
 * 64bit, extents, no orphan_file, no metadata_csum_seed) all mount on the
 * guest's 6.1 kernel.
 */
const EXT4_ARGS = ['-q', '-F', '-t', 'ext4', '-m', '0', '-O', '^resize_inode', '-E', 'lazy_itable_init=0,lazy_journal_init=1,root_owner=0:0'];
const EXT4_FORMAT = createHash('sha256').update(`ext4-1 ${EXT4_ARGS.join(' ')}`).digest('hex').slice(0, 8);

/** Bytes a file takes on the host's disk (allocated blocks, not its apparent size); 0 if missing. */
export function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

function toolError(what: string, err: unknown): Error {
  const e = err as { code?: string; stderr?: string; message?: string; path?: string };
  if (e.code === 'ENOENT') return internal(`${what}: ${e.path ?? 'a tool'} is not installed (apt-get install erofs-utils e2fsprogs)`);
  return internal(`${what}: ${String(e.stderr || e.message || err).trim()}`);
}

/** Temporary files of crashed builds in DIR whose final name matches FINAL, untouched for MAX_AGE_MS. */
function sweepTemporaries(dir: string, final: RegExp, maxAgeMs = 60 * 60 * 1000): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.(.+)\.tmp-[0-9a-f]+$/.exec(n);
    if (!m || !final.test(m[1]!)) continue;
    const p = path.join(dir, n);
    try {
      if (Date.now() - fs.statSync(p).mtimeMs > maxAgeMs) fs.rmSync(p, { force: true });
    } catch {
      /* gone meanwhile */
    }
  }
}

/** One build per key at a time in this process; later callers share the first one's promise. */
class Once {
  private readonly inflight = new Map<string, Promise<string>>();
  run(key: string, build: () => Promise<string>): Promise<string> {
    let p = this.inflight.get(key);
    if (!p) {
      p = build().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }
}

/** What an image filesystem is built from; the key names the build. */
export interface ImageFsSource {
  /** The unpacked root directory. */
  rootfs: string;
  /** Anything that changes when the source does (image ID and layer chain). */
  key: string;
}

/** The key of an image's filesystem: its ID, its layer chain and the build's format. */
export function imageFsKey(image: Pick<Image, 'id' | 'config'>): string {
  const chain = image.config.rootfs?.diff_ids ?? [];
  return createHash('sha256').update(JSON.stringify([EROFS_FORMAT, image.id, chain])).digest('hex').slice(0, 16);
}

const erofsBuilds = new Once();

/**
 * The erofs image of SOURCE in DIR (`image-<key>.erofs`), built if missing.
 * Other `image-*.erofs` files in DIR (older keys) are removed once the new one
 * is published; a VM still using one keeps its open file.
 */
export function ensureErofs(dir: string, source: ImageFsSource): Promise<string> {
  if (!/^[0-9a-zA-Z_-]+$/.test(source.key)) throw internal(`bad image filesystem key ${source.key}`);
  const final = path.join(dir, `image-${source.key}.erofs`);
  if (fs.existsSync(final)) return Promise.resolve(final);
  return erofsBuilds.run(final, async () => {
    if (fs.existsSync(final)) return final;
    fs.mkdirSync(dir, { recursive: true });
    sweepTemporaries(dir, /^image-.*\.erofs$/);
    const tmp = temporaryName(final);
    fs.closeSync(fs.openSync(tmp, 'wx', 0o600));
    try {
      await run('mkfs.erofs', [...EROFS_ARGS, tmp, source.rootfs], { maxBuffer: 16 * 1024 * 1024 });
      seal(tmp);
      publish(tmp, final);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw toolError(`cannot build the image filesystem from ${source.rootfs}`, err);
    }
    for (const n of fs.readdirSync(dir)) {
      if (n !== path.basename(final) && /^image-.*\.erofs$/.test(n)) fs.rmSync(path.join(dir, n), { force: true });
    }
    return final;
  });
}

/** `--storage-opt size` as a disk size: whole 4 KiB blocks, within bounds. */
export function diskSize(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < MIN_DISK_BYTES) throw invalid(`the writable disk must be at least ${MIN_DISK_BYTES / 1024 ** 2}MB`);
  if (bytes > MAX_DISK_BYTES) throw invalid('the writable disk can be at most 16TB');
  return Math.ceil(bytes / 4096) * 4096;
}

const blankBuilds = new Once();
const diskCopies = new Once();

/** The blank ext4 of BYTES in BLANK_DIR, formatted once. */
export function ensureBlankExt4(blankDir: string, bytes: number): Promise<string> {
  const size = diskSize(bytes);
  const final = path.join(blankDir, `blank-ext4-${size}-${EXT4_FORMAT}.img`);
  if (fs.existsSync(final)) return Promise.resolve(final);
  return blankBuilds.run(final, async () => {
    if (fs.existsSync(final)) return final;
    fs.mkdirSync(blankDir, { recursive: true, mode: 0o700 });
    sweepTemporaries(blankDir, /^blank-ext4-/);
    const tmp = temporaryName(final);
    fs.closeSync(fs.openSync(tmp, 'wx', 0o600));
    try {
      fs.truncateSync(tmp, size);
      await run('mkfs.ext4', [...EXT4_ARGS, tmp]);
      seal(tmp);
      publish(tmp, final);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw toolError(`cannot format a ${size}-byte writable disk`, err);
    }
    return final;
  });
}

/** Where a container's writable disk is (whether or not it exists yet). */
export function containerDiskPath(containerDir: string): string {
  return path.join(containerDir, DISK_FILE);
}

/**
 * The container's writable disk, a sparse ext4 file of BYTES, copied from the
 * blank of that size on first use. An existing disk is kept as it is (its
 * data is the container's; its size was fixed when it was made). A copy of
 * the blank is kept ready beside it (`<blank>.spare`, made while the VM
 * starts): the next disk of that size is then a rename, not a `cp` (a process
 * start, 6-8 ms of the start's host side). No guest has seen a spare.
 */
export function ensureContainerDisk(containerDir: string, bytes: number, blankDir: string): Promise<string> {
  const final = containerDiskPath(containerDir);
  if (fs.existsSync(final)) return Promise.resolve(final);
  return diskCopies.run(final, async () => {
    if (fs.existsSync(final)) return final;
    const blank = await ensureBlankExt4(blankDir, bytes);
    sweepTemporaries(containerDir, DISK_RE, 0);
    await copyViaSpare(blank, final).catch((err) => {
      throw toolError("cannot create the container's writable disk", err);
    });
    return final;
  });
}

/** Frees a container's writable disk (and a copy a crash left behind). */
export function removeContainerDisk(containerDir: string): void {
  fs.rmSync(containerDiskPath(containerDir), { force: true });
  sweepTemporaries(containerDir, DISK_RE, 0);
}

/** Host disk space taken by block storage, in allocated bytes. */
export interface BlockUsage {
  /** Image ID (`sha256:...`) → bytes of its erofs image(s). */
  images: Record<string, number>;
  /** Container ID → bytes of its writable disk (containers that have one). */
  containers: Record<string, number>;
  /** The blank ext4 templates. */
  blanks: number;
  imagesTotal: number;
  containersTotal: number;
}

/**
 * What block storage takes on the host, from the directories: image
 * filesystems under IMAGES_DIR/<id hex>/, disks under CONTAINERS_DIR/<id>/,
 * blanks in BLANK_DIR.
 */
export function blockUsage(dirs: { imagesDir: string; containersDir: string; blankDir: string }): BlockUsage {
  const list = (d: string) => {
    try {
      return fs.readdirSync(d);
    } catch {
      return [];
    }
  };
  const usage: BlockUsage = { images: {}, containers: {}, blanks: 0, imagesTotal: 0, containersTotal: 0 };
  for (const hex of list(dirs.imagesDir)) {
    const files = list(path.join(dirs.imagesDir, hex)).filter((n) => /^image-.*\.erofs$/.test(n));
    if (!files.length) continue;
    const bytes = files.reduce((n, f) => n + allocatedBytes(path.join(dirs.imagesDir, hex, f)), 0);
    usage.images[`sha256:${hex}`] = bytes;
    usage.imagesTotal += bytes;
  }
  for (const id of list(dirs.containersDir)) {
    const disk = containerDiskPath(path.join(dirs.containersDir, id));
    if (!fs.existsSync(disk)) continue;
    const bytes = allocatedBytes(disk);
    usage.containers[id] = bytes;
    usage.containersTotal += bytes;
  }
  for (const n of list(dirs.blankDir)) usage.blanks += allocatedBytes(path.join(dirs.blankDir, n));
  return usage;
}

/**
 * Block storage bound to a data root, as the engine uses it. Image
 * filesystems live beside the unpacked roots of RootfsBuilder
 * (`<data-root>/rootfs/<id hex>/`), so removing an image's root removes them.
 */
export class BlockStorage {
  readonly blankDir: string;

  constructor(
    private readonly rootfs: { imageRootfs(image: Image): Promise<string>; imageRootfsPath(imageId: string): string },
    readonly dirs: { imagesDir: string; containersDir: string; dataRoot: string },
  ) {
    this.blankDir = path.join(dirs.dataRoot, 'blockfs');
  }

  /** The directory holding an image's unpacked root and its filesystem image. */
  imageDir(imageId: string): string {
    return path.dirname(this.rootfs.imageRootfsPath(imageId));
  }

  /** The image's read-only erofs, built (after unpacking the image, if needed) on first use. */
  async ensureImageFs(image: Image): Promise<string> {
    const key = imageFsKey(image);
    const dir = this.imageDir(image.id);
    const ready = path.join(dir, `image-${key}.erofs`);
    if (fs.existsSync(ready)) return ready;
    const rootfs = await this.rootfs.imageRootfs(image);
    return ensureErofs(dir, { rootfs, key });
  }

  /** The blank ext4 of BYTES (see ensureBlankExt4). */
  ensureBlank(bytes: number): Promise<string> {
    return ensureBlankExt4(this.blankDir, bytes);
  }

  /** The container's writable disk of BYTES (see ensureContainerDisk). */
  ensureContainerDisk(containerDir: string, bytes: number): Promise<string> {
    return ensureContainerDisk(containerDir, bytes, this.blankDir);
  }

  removeContainerDisk(containerDir: string): void {
    removeContainerDisk(containerDir);
  }

  blockUsage(): BlockUsage {
    return blockUsage({ imagesDir: this.dirs.imagesDir, containersDir: this.dirs.containersDir, blankDir: this.blankDir });
  }
}
