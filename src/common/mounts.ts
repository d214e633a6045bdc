/**
 * What is mounted where, from /proc/self/mountinfo. Used to refuse removing a
 * directory recursively while something is mounted under it: `rm -r` through a
 * bind mount deletes the host files behind it.
 */
import fs from 'node:fs';

/** Every mount point of this mount namespace (mountinfo's 5th field, unescaped). */
function mountTargets(): string[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Mount points currently under `dir` (not `dir` itself), deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mountTargets()
    .filter((p) => p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/** Whether DIR itself is a mount point. */
export function isMountPoint(dir: string): boolean {
  const target = dir.replace(/\/+$/, '');
  return mountTargets().includes(target);
}
