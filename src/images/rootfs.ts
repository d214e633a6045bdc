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

  private async unpack(image: Image, dir: string): Promise<string> {
    const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
    const rootfs = path.join(tmp, 'rootfs');
    fs.mkdirSync(rootfs, { recursive: true, mode: 0o755 });
    try {
      for (const layer of image.manifest.layers) {
        await applyLayer(rootfs, fs.createReadStream(this.store.blobPath(layer.digest)));
      }
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
}

export function containerLayerPaths(containerDir: string): ContainerLayerPaths {
  return {
    upper: path.join(containerDir, 'upper'),
    work: path.join(containerDir, 'work'),
    merged: path.join(containerDir, 'rootfs'),
  };
}

function isMounted(dir: string): boolean {
  try {
    const parent = fs.statSync(path.dirname(dir));
    return fs.statSync(dir).dev !== parent.dev;
  } catch {
    return false;
  }
}

/** Mounts the container's overlay (idempotent). */
export function mountContainerLayer(lower: string, containerDir: string): string {
  const p = containerLayerPaths(containerDir);
  for (const d of [p.upper, p.work, p.merged]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  if (isMounted(p.merged)) return p.merged;
  try {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${p.upper},workdir=${p.work}`, p.merged], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    throw internal(`cannot mount the container's root filesystem: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
  return p.merged;
}

export function unmountContainerLayer(containerDir: string): void {
  const p = containerLayerPaths(containerDir);
  if (!isMounted(p.merged)) return;
  try {
    execFileSync('umount', [p.merged], { stdio: 'ignore' });
  } catch {
    execFileSync('umount', ['-l', p.merged], { stdio: 'ignore' });
  }
}
