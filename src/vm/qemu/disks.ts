/**
 * Disk files of a VM whose root is on block devices, on the QEMU side.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RootDisks } from '../driver.js';

/**
 * Stand-ins for a template's disks. The guest reads a disk's capacity when it
 * boots, so they are large and sparse: any real disk a clone gets is smaller,
 * and its filesystem never reaches past its own end. The agent drops the page
 * cache of a disk before mounting it (the template may have read the stand-in).
 */
export function placeholderDisks(dir: string): RootDisks {
  const disks = { lower: path.join(dir, 'lower.img'), upper: path.join(dir, 'upper.img') };
  for (const f of Object.values(disks)) {
    const fd = fs.openSync(f, 'w', 0o600);
    fs.ftruncateSync(fd, PLACEHOLDER_DISK_BYTES);
    fs.closeSync(fd);
  }
  return disks;
}

const PLACEHOLDER_DISK_BYTES = 2 ** 40;
