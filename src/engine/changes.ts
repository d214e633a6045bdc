/**
 * `diff`: what a container changed against its image, read from its overlayfs
 * upper directory on the host (no VM involved). Overlay records a deletion as a
 * 0:0 character device and a replaced directory as an "opaque" directory.
 */
import fs from 'node:fs';
import path from 'node:path';

export const ChangeKind = { Modified: 0, Added: 1, Deleted: 2 } as const;
export interface Change {
  Path: string;
  Kind: (typeof ChangeKind)[keyof typeof ChangeKind];
}

/** Paths the guest agent itself manages inside every container root (mount
 * points and files it binds over); Docker hides its equivalents too. */
export const AGENT_PATHS = new Set(['/proc', '/sys', '/dev', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);

export function isWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

export function existsIn(lower: string, rel: string): boolean {
  try {
    fs.lstatSync(path.join(lower, rel));
    return true;
  } catch {
    return false;
  }
}

export function containerChanges(upper: string, lower: string): Change[] {
  const out: Change[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(upper, rel)).sort()) {
      const r = `${rel}/${name}`;
      const st = fs.lstatSync(path.join(upper, r));
      const inLower = existsIn(lower, r);
      if (AGENT_PATHS.has(r) && !inLower) continue;
      if (isWhiteout(st)) {
        if (inLower) out.push({ Path: r, Kind: ChangeKind.Deleted });
        continue;
      }
      out.push({ Path: r, Kind: inLower ? ChangeKind.Modified : ChangeKind.Added });
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}
