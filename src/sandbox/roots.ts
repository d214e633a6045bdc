/**
 * Container roots on the host side of a VM's root share: a root prepared on
 * the host is bound (recursively: its volumes are bind mounts inside it) under
 * a share QEMU already serves, for warm-pool VMs and pod VMs whose share was
 * fixed before the container existed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { isMountPoint, mountsUnder } from '../common/mounts.js';

/** Binds SOURCE (and every mount under it) at TARGET, creating TARGET. */
export function bindRoot(target: string, source: string): void {
  fs.mkdirSync(target, { recursive: true });
  execFileSync('mount', ['--rbind', source, target], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Unbinds TARGET and removes the (then empty) mount point. If anything is
 * still mounted at or under it, nothing is deleted and false is returned:
 * deleting recursively through a mount deletes the files behind it.
 */
export function unbindRoot(target: string): boolean {
  if (!fs.existsSync(target)) return true;
  for (const args of [['-R', target], ['-l', target]]) {
    if (!isMountPoint(target)) break;
    try {
      execFileSync('umount', args, { stdio: 'ignore' });
    } catch {
      /* busy or already gone: the lazy unmount or the check below decides */
    }
  }
  if (isMountPoint(target) || mountsUnder(target).length) return false;
  fs.rmSync(target, { recursive: true, force: true });
  return true;
}
