/**
 * Disk files of a VM whose root is on block devices, on the QEMU side.
 */
import fs from 'node:fs';
import path from 'node:path';
import { copyViaSpare } from '../../common/published-files.js';
import type { RootDisks } from '../driver.js';
import type { QemuVm } from './process.js';
import { QmpClient } from './qmp.js';

/**
 * Stand-ins for a template's disks. The guest reads a disk's capacity when it
 * boots, so they are large and sparse: any real disk a clone gets is smaller,
 * and its filesystem never reaches past its own end. The agent drops the page
 * cache of a disk before mounting it (the template may have read the stand-in).
 */
export function placeholderDisks(dir: string, upper?: string): RootDisks {
  const disks: RootDisks = { lower: path.join(dir, 'lower.img'), upper: upper ?? path.join(dir, 'upper.img') };
  for (const f of upper ? [disks.lower] : Object.values(disks)) {
    const fd = fs.openSync(f, 'w', 0o600);
    fs.ftruncateSync(fd, PLACEHOLDER_DISK_BYTES);
    fs.closeSync(fd);
  }
  return disks;
}

const PLACEHOLDER_DISK_BYTES = 2 ** 40;

/**
 * Puts DISKS behind a running QEMU's disks (a warm-pool VM started on
 * placeholders, paused): virtio-mmio has no hotplug, so the devices stay and
 * their raw nodes get a new file child (QMP `blockdev-add` of a file node,
 * `blockdev-reopen` of the raw node, `blockdev-del` of the placeholder's). QEMU
 * may be jailed with only its run directory: each file is hard-linked there
 * first (the data root is one filesystem; the links go with the run
 * directory), the image's filesystem, which other containers share, into
 * READONLYDIR, which the jail binds read-only (a link cannot leave that mount
 * either). The guest agent drops a disk's cached pages before it mounts it.
 */
export async function swapDisks(vm: QemuVm, runDir: string, readOnlyDir: string, disks: RootDisks, keepUpper = false): Promise<void> {
  const qmp = await QmpClient.connect(vm.paths.qmp, 5000);
  try {
    for (const role of keepUpper ? (['lower'] as const) : (['lower', 'upper'] as const)) {
      const link = path.join(role === 'lower' ? readOnlyDir : runDir, `${role}.disk`);
      fs.rmSync(link, { force: true });
      fs.linkSync(disks[role], link);
      const mode = role === 'lower' ? { 'read-only': true } : { 'read-only': false, discard: 'unmap' };
      await qmp.execute('blockdev-add', { driver: 'file', 'node-name': `${role}-file-c`, filename: link, ...mode });
      await qmp.execute('blockdev-reopen', { options: [{ driver: 'raw', 'node-name': role, file: `${role}-file-c`, ...mode }] });
      await qmp.execute('blockdev-del', { 'node-name': `${role}-file` });
    }
  } finally {
    qmp.close();
  }
}

/** The pre-mounted upper disk in a template's directory (a spare copy is kept beside it). */
export const PREMOUNT_BASE = 'upper-base.img';

/**
 * DEST (new, mode 0600) as a byte-for-byte copy of a template's pre-mounted
 * upper disk BASE (see copyViaSpare). The base itself is read-only (0400) and
 * never given to a VM that runs.
 */
export async function copyPremountBase(base: string, dest: string): Promise<void> {
  if (fs.existsSync(dest)) throw new Error(`${dest} exists already`);
  await copyViaSpare(base, dest);
}
