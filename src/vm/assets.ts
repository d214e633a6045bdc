/**
 * Where the guest kernel and the agent's initramfs come from. `npm run setup`
 * puts both under build/guest/; HYPERBOX_KERNEL / HYPERBOX_INITRD (or the daemon
 * config) let a user bring their own kernel.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HyperboxError } from '../common/errors.js';
import { repoRoot } from '../common/paths.js';


export interface GuestAssets {
  kernel: string;
  initrd: string;
  /** Identifies the exact kernel+initrd pair: templates and probes are keyed by it. */
  fingerprint: string;
}

function fileFingerprint(file: string): string {
  // Hashing the kernel's 17 MB on every start would cost ~30 ms; size+mtime+inode
  // changes whenever setup rebuilds or a user swaps the file.
  const st = fs.statSync(file);
  return `${file}:${st.size}:${st.mtimeMs}:${st.ino}`;
}

export function locateGuestAssets(overrides: { kernel?: string; initrd?: string } = {}): GuestAssets {
  const kernel = overrides.kernel ?? process.env.HYPERBOX_KERNEL ?? path.join(repoRoot, 'build/guest/vmlinux');
  const initrd = overrides.initrd ?? process.env.HYPERBOX_INITRD ?? path.join(repoRoot, 'build/guest/initrd.img');
  for (const [what, file] of [
    ['guest kernel', kernel],
    ['guest initrd', initrd],
  ] as const) {
    if (!fs.existsSync(file)) {
      throw new HyperboxError('unavailable', `${what} not found at ${file}: run 'npm run setup' first`);
    }
  }
  const fingerprint = createHash('sha256')
    .update(fileFingerprint(kernel))
    .update(fileFingerprint(initrd))
    .digest('hex')
    .slice(0, 16);
  return { kernel, initrd, fingerprint };
}
