/**
 * Container roots on the host side of a VM's root share: a root prepared on
 * the host is bound (recursively: its volumes are bind mounts inside it) under
 * a share QEMU already serves, for warm-pool VMs and pod VMs whose share was
 * fixed before the container existed.
 *
 * A share is writable by its guest: whatever sits at a target path may be
 * something the guest made (a symlink to `/`, say). So a target is opened with
 * O_NOFOLLOW and mounted through /proc/self/fd (with --no-canonicalize: mount(8)
 * would otherwise resolve that path back into a string the guest can swap),
 * and only a path that is itself a mount point is ever unmounted.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isMountPoint, mountsUnder } from '../common/mounts.js';

/**
 * Binds SOURCE (and every mount under it, unless RECURSIVE is false) at TARGET,
 * a directory made here if missing; a SOURCE that is a file (an OCI file bind
 * such as /etc/hosts) is bound on a file made at TARGET.
 */
export function bindRoot(target: string, source: string, recursive = true): void {
  const isDir = fs.statSync(source).isDirectory();
  const st = fs.lstatSync(target, { throwIfNoEntry: false });
  const fits = st && !st.isSymbolicLink() && (isDir ? st.isDirectory() : st.isFile());
  if (st && !fits) {
    if (st.isDirectory()) throw new Error(`${target} is a directory, not a file to bind ${source} on`);
    fs.rmSync(target, { force: true }); // a link or file the guest planted: only the entry goes
  }
  if (!fits) {
    fs.mkdirSync(path.dirname(target), { recursive: true }); // the share itself is the daemon's
    if (isDir) fs.mkdirSync(target);
    else fs.closeSync(fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600));
  }
  const fd = fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | (isDir ? fs.constants.O_DIRECTORY : 0));
  try {
    execFileSync('mount', ['--no-canonicalize', recursive ? '--rbind' : '--bind', source, `/proc/${process.pid}/fd/${fd}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Unbinds TARGET and removes the (then empty) mount point. If anything is
 * still mounted at or under it, nothing is deleted and false is returned:
 * deleting recursively through a mount deletes the files behind it.
 */
export function unbindRoot(target: string): boolean {
  if (!fs.lstatSync(target, { throwIfNoEntry: false })) return true;
  for (const args of [['-R', target], ['-l', target]]) {
    // Only the exact path mountinfo lists: a symlink planted there is no mount point.
    if (!isMountPoint(target)) break;
    try {
      execFileSync('umount', ['--no-canonicalize', ...args], { stdio: 'ignore' });
    } catch {
      /* busy or already gone: the lazy unmount or the check below decides */
    }
  }
  if (isMountPoint(target) || mountsUnder(target).length) return false;
  fs.rmSync(target, { recursive: true, force: true }); // does not follow symlinks
  return true;
}
