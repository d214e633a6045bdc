import fs from 'node:fs';
import path from 'node:path';

/** Bytes in the regular files under DIR, not following symlinks (`du`-like, apparent sizes). Throws if DIR cannot be read. */
export function treeSize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += treeSize(p);
    else if (e.isFile()) total += fs.lstatSync(p).size;
  }
  return total;
}
