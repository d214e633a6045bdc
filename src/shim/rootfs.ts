/**
 * A container's root as containerd hands it to a shim: the snapshotter's
 * mounts (CreateTaskRequest.rootfs: an overlay, or a bind for the native
 * snapshotter), which the shim mounts at bundle/rootfs itself, as runc's does.
 * With no mounts the bundle's rootfs is used as it is.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { isMountPoint } from '../common/mounts.js';
import { Code, RpcError } from './ttrpc.js';

export interface RootfsMount {
  type: string;
  source: string;
  options: string[];
}

const run = (args: string[]) => execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });

export function mountRootfs(mounts: RootfsMount[], target: string): void {
  if (mounts.length > 1) throw new RpcError(Code.Unimplemented, 'a root made of several mounts is not supported by the hyperbox shim');
  const m = mounts[0];
  if (!m) return;
  fs.mkdirSync(target, { recursive: true });
  try {
    if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind')) {
      run(['--no-canonicalize', m.options.includes('rbind') ? '--rbind' : '--bind', m.source, target]);
      if (m.options.includes('ro')) run(['--no-canonicalize', '-o', 'remount,bind,ro', target]);
    } else {
      run(['--no-canonicalize', '-t', m.type, '-o', m.options.join(','), m.source, target]);
    }
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new RpcError(Code.Internal, `mounting the container's root (${m.type}): ${stderr || (err as Error).message}`);
  }
}

/** Undoes mountRootfs (nothing when the bundle's rootfs was not mounted by us). */
export function unmountRootfs(target: string): void {
  if (!isMountPoint(target)) return;
  try {
    execFileSync('umount', ['--no-canonicalize', '-R', target], { stdio: 'ignore' });
  } catch {
    execFileSync('umount', ['--no-canonicalize', '-l', target], { stdio: 'ignore' });
  }
}
