/**
 * Root filesystems, prepared on the host (never inside the VM):
 *  - the read-only part is one directory per image, unpacked once and reused by
 *    every container of that image;
 *  - each container gets its own writable layer, an overlayfs upper directory on
 *    top of the image's directory; the merged view is what the VM mounts over 9p.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { internal } from '../common/errors.js';
import { applyLayer } from './layer.js';
import type { ContentStore, Image } from './store.js';

/** Next to an unpacked root: the digests of the layers it was made of, in order. */
const LAYERS_FILE = 'layers.json';

export class RootfsBuilder {
  constructor(
    private readonly store: ContentStore,
    private readonly cacheDir: string,
  ) {
    fs.mkdirSync(cacheDir, { recursive: true });
  }

  private inflight = new Map<string, Promise<string>>();

  /** Where an image's unpacked root lives (whether or not it is built yet). */
  imageRootfsPath(imageId: string): string {
    return path.join(this.cacheDir, imageId.slice(7), 'rootfs');
  }

  /** Directory holding the image's unpacked layers; built on first use. */
  imageRootfs(image: Image): Promise<string> {
    const dir = path.join(this.cacheDir, image.id.slice(7));
    if (fs.existsSync(path.join(dir, 'complete'))) return Promise.resolve(path.join(dir, 'rootfs'));
    let p = this.inflight.get(dir);
    if (!p) {
      p = this.unpack(image, dir).finally(() => this.inflight.delete(dir));
      this.inflight.set(dir, p);
    }
    return p;
  }

  /**
   * The unpacked root of another image whose layers are the first layers of
   * IMAGE's, the longest such chain (a build's steps share all but their last
   * layer, or all of them for a config-only step): starting from a copy of it
   * saves unpacking those layers again.
   */
  private closestUnpacked(image: Image): { rootfs: string; layers: number } | undefined {
    const chain = image.manifest.layers.map((l) => l.digest);
    let best: { rootfs: string; layers: number } | undefined;
    for (const name of fs.readdirSync(this.cacheDir)) {
      if (name.includes('.tmp-')) continue;
      let layers: string[];
      try {
        layers = JSON.parse(fs.readFileSync(path.join(this.cacheDir, name, LAYERS_FILE), 'utf8')) as string[];
      } catch {
        continue; // unpacked before layer chains were recorded, or being removed
      }
      if (!layers.length || layers.length > chain.length || layers.some((d, i) => d !== chain[i])) continue;
      if (!best || layers.length > best.layers) best = { rootfs: path.join(this.cacheDir, name, 'rootfs'), layers: layers.length };
    }
    return best;
  }

  private async unpack(image: Image, dir: string): Promise<string> {
    const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
    const rootfs = path.join(tmp, 'rootfs');
    fs.mkdirSync(tmp, { recursive: true, mode: 0o755 });
    try {
      const base = this.closestUnpacked(image);
      let start = 0;
      if (base) {
        // The same layers: hard links (nothing is ever written into an unpacked root); fewer: a copy to apply the rest on.
        const same = base.layers === image.manifest.layers.length;
        try {
          execFileSync('cp', [same ? '-al' : '-a', ...(same ? [] : ['--reflink=auto']), base.rootfs, rootfs], { stdio: ['ignore', 'ignore', 'pipe'] });
          start = base.layers;
        } catch {
          fs.rmSync(rootfs, { recursive: true, force: true }); // removed meanwhile: unpack it all
        }
      }
      if (start === 0) fs.mkdirSync(rootfs, { mode: 0o755 });
      for (const layer of image.manifest.layers.slice(start)) {
        await applyLayer(rootfs, fs.createReadStream(this.store.blobPath(layer.digest)));
      }
      fs.writeFileSync(path.join(tmp, LAYERS_FILE), JSON.stringify(image.manifest.layers.map((l) => l.digest)));
      fs.writeFileSync(path.join(tmp, 'complete'), image.id);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
      return path.join(dir, 'rootfs');
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  removeImageRootfs(imageId: string): void {
    fs.rmSync(path.join(this.cacheDir, imageId.slice(7)), { recursive: true, force: true });
  }
}

export interface ContainerLayerPaths {
  upper: string;
  work: string;
  merged: string;
  /** A size-limited writable layer (`--storage-opt size=`): an ext4 image file
   * mounted on `layerMount`, holding upper and work. */
  sized?: { image: string; layerMount: string };
}

export function containerLayerPaths(containerDir: string): ContainerLayerPaths {
  const image = path.join(containerDir, 'layer.img');
  const sized = fs.existsSync(image) ? { image, layerMount: path.join(containerDir, 'layer') } : undefined;
  const base = sized?.layerMount ?? containerDir;
  return { upper: path.join(base, 'upper'), work: path.join(base, 'work'), merged: path.join(containerDir, 'rootfs'), sized };
}

/**
 * Gives a container a writable layer of at most BYTES: an ext4 filesystem in a
 * file of that size, loop-mounted. Writing past it fails with ENOSPC inside the
 * container, and nothing else on the host fills up.
 */
export function createSizedLayer(containerDir: string, bytes: number): void {
  const image = path.join(containerDir, 'layer.img');
  fs.mkdirSync(containerDir, { recursive: true });
  fs.closeSync(fs.openSync(image, 'w'));
  fs.truncateSync(image, bytes);
  try {
    execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'root_owner=0:0', image], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    fs.rmSync(image, { force: true });
    throw internal(`cannot create a ${bytes}-byte writable layer: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
}

/** Bytes used and available in a sized writable layer (undefined when unsized). */
export function sizedLayerUsage(containerDir: string): { used: number; free: number } | undefined {
  const p = containerLayerPaths(containerDir);
  if (!p.sized || !isMounted(p.sized.layerMount)) return undefined;
  const st = fs.statfsSync(p.sized.layerMount);
  return { used: (st.blocks - st.bfree) * st.bsize, free: st.bavail * st.bsize };
}

function isMounted(dir: string): boolean {
  try {
    const parent = fs.statSync(path.dirname(dir));
    return fs.statSync(dir).dev !== parent.dev;
  } catch {
    return false;
  }
}

/**
 * Every host-side mount of a container's files is nosuid,nodev: a setuid-root
 * binary or a device node a container writes is inert on the host. The guest,
 * which sees the files through 9p, keeps their modes.
 */
export const HOST_SIDE_FLAGS = 'nosuid,nodev';

/** Mounts the container's overlay (idempotent). */
export function mountContainerLayer(lower: string, containerDir: string): string {
  const p = containerLayerPaths(containerDir);
  if (p.sized && !isMounted(p.sized.layerMount)) {
    fs.mkdirSync(p.sized.layerMount, { recursive: true });
    try {
      execFileSync('mount', ['-o', `loop,${HOST_SIDE_FLAGS}`, p.sized.image, p.sized.layerMount], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      throw internal(`cannot mount the container's writable layer: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
    }
  }
  for (const d of [p.upper, p.work, p.merged]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  if (isMounted(p.merged)) return p.merged;
  try {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${p.upper},workdir=${p.work},${HOST_SIDE_FLAGS}`, p.merged], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    throw internal(`cannot mount the container's root filesystem: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
  return p.merged;
}

export function unmountContainerLayer(containerDir: string): void {
  const p = containerLayerPaths(containerDir);
  for (const dir of [p.merged, p.sized?.layerMount]) {
    if (!dir || !isMounted(dir)) continue;
    try {
      execFileSync('umount', [dir], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    }
  }
}
