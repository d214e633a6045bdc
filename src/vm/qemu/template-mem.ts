/**
 * The /dev/shm directories that hold templates' guest RAM: made private to
 * this user, and swept when the template directory they belong to is gone.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../common/logger.js';

/** Names the template directory a /dev/shm RAM directory belongs to (for sweeping stale ones). */
export const OWNER_FILE = 'owner';

/**
 * RAM directories in /dev/shm whose template directory is gone (a data root
 * deleted with its daemon stopped, say): they would hold hundreds of MiB of
 * shared memory forever. Only directories of this user, named by an owner file.
 */
export function sweepOrphanedMemDirs(logger: Logger): void {
  const uid = process.getuid?.() ?? 0;
  for (const name of fs.readdirSync('/dev/shm').filter((n) => n.startsWith('hyperbox-'))) {
    const dir = path.join('/dev/shm', name);
    try {
      const st = fs.lstatSync(dir);
      if (!st.isDirectory() || st.uid !== uid) continue;
      const owner = fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8');
      if (fs.existsSync(owner)) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      logger.info(`removed ${dir}: its template directory ${owner} is gone`);
    } catch {
      // no owner file (made by an older hyperbox, or being made now): left alone
    }
  }
}

/**
 * DIR as a directory only this process's user can use, made now (exclusively)
 * or checked: every clone maps the RAM image kept there, so a directory another
 * local user made first (at this predictable /dev/shm path) or can write is
 * refused, never used.
 */
export function privateDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (st.isDirectory() && !st.isSymbolicLink() && st.uid === uid && (st.mode & 0o077) !== 0) {
    // Ours, made by an older hyperbox with a looser mode: tighten it.
    fs.chmodSync(dir, 0o700);
    return;
  }
  if (!st.isDirectory() || st.isSymbolicLink() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new Error(`template memory directory ${dir} is not private (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): refusing to keep guest memory there`);
  }
}
