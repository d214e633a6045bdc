/**
 * Warm pool: clones restored ahead of time and left paused, per guest shape, so
 * a container start skips QEMU's process start and the device-state load.
 *
 * A pool VM is started before its container exists, and QEMU opens a 9p share's
 * directory once, at start. So each pool VM shares an empty directory of its
 * own; when a container claims it, the host bind-mounts the container's root at
 * `<share>/root` and the agent mounts that subdirectory.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger.js';
import { QmpClient } from './qmp.js';
import type { QemuVm } from './qemu.js';
import { newRunId, startClone, type GuestShape, type TemplateStore } from './template.js';

export const POOL_SUBDIR = 'root';

export interface PoolMember {
  vm: QemuVm;
  runDir: string;
  shareDir: string;
  templateKey: string;
}

export class ClonePool {
  private ready = new Map<string, PoolMember[]>();
  private filling = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly templates: TemplateStore,
    private readonly runRoot: string,
    readonly size: number,
    private readonly logger: Logger,
  ) {}

  /** Starts pool VMs for a shape until `size` are ready or starting. */
  fill(shape: GuestShape): void {
    if (this.size <= 0 || this.closed) return;
    const key = this.templates.keyOf(shape);
    const have = (this.ready.get(key)?.length ?? 0) + (this.filling.get(key) ?? 0);
    for (let i = have; i < this.size; i++) {
      this.filling.set(key, (this.filling.get(key) ?? 0) + 1);
      void this.startMember(shape)
        .then((m) => {
          if (this.closed || m.templateKey !== key) return releaseMember(m);
          const list = this.ready.get(key) ?? [];
          list.push(m);
          this.ready.set(key, list);
          m.vm.once('exit', () => this.ready.set(key, (this.ready.get(key) ?? []).filter((x) => x !== m)));
        })
        .catch((err: Error) => this.logger.warn(`warm pool: ${err.message}`))
        .finally(() => this.filling.set(key, (this.filling.get(key) ?? 1) - 1));
    }
  }

  private async startMember(shape: GuestShape): Promise<PoolMember> {
    const template = await this.templates.ensure(shape);
    const runDir = path.join(this.runRoot, `pool-${newRunId()}`);
    const shareDir = path.join(runDir, 'share');
    fs.mkdirSync(path.join(shareDir, POOL_SUBDIR), { recursive: true });
    const vm = await startClone(template, { runDir, rootPath: shareDir, paused: true });
    return { vm, runDir, shareDir, templateKey: template.key };
  }

  /**
   * Takes a ready VM for the shape, with `rootfs` mounted as its share's root,
   * and lets it run. Returns undefined if none is ready (the caller clones).
   */
  async claim(shape: GuestShape, rootfs: string): Promise<PoolMember | undefined> {
    const key = this.templates.keyOf(shape);
    const list = this.ready.get(key);
    const m = list?.shift();
    this.fill(shape);
    if (!m) return undefined;
    try {
      // --rbind: the container's volumes are bind mounts inside its root.
      execFileSync('mount', ['--rbind', rootfs, path.join(m.shareDir, POOL_SUBDIR)], { stdio: 'ignore' });
      const qmp = await QmpClient.connect(m.vm.paths.qmp, 5000);
      await qmp.execute('cont');
      qmp.close();
      return m;
    } catch (err) {
      releaseMember(m);
      this.logger.warn(`warm pool: claim failed: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Stops every pool VM (daemon shutdown). */
  async drain(): Promise<void> {
    this.closed = true;
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(all.map(async (m) => {
      releaseMember(m);
      await m.vm.waitExit();
    }));
  }

  get readyCount(): number {
    return [...this.ready.values()].reduce((n, l) => n + l.length, 0);
  }
}

/** Kills a pool VM and, once QEMU is gone, unmounts its root and removes its run dir. */
export function releaseMember(m: Pick<PoolMember, 'vm' | 'runDir' | 'shareDir'>): void {
  m.vm.kill();
  void m.vm.waitExit().then(() => {
    const root = path.join(m.shareDir, POOL_SUBDIR);
    try {
      execFileSync('umount', ['-R', root], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
    // Never remove recursively through a container root that is still bound here.
    if (isMountPoint(root)) return;
    fs.rmSync(m.runDir, { recursive: true, force: true });
  });
}

function isMountPoint(dir: string): boolean {
  try {
    return fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev;
  } catch {
    return false;
  }
}
