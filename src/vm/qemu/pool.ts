/**
 * Warm pool: clones restored ahead of time and left paused, per guest shape, so
 * a container start skips QEMU's process start and the device-state load.
 *
 * A pool VM is started before its container exists, and QEMU opens a 9p share's
 * directory once, at start. So each pool VM shares an empty directory of its
 * own; whoever takes it binds a root under that directory (the sandbox layer
 * does: the VM layer mounts nothing) and resumes the VM. A pool VM for a root
 * on disks starts on placeholder disks instead, and gets the container's disks
 * when it is taken (disks.ts, swapDisks); one whose shape also has a share (a
 * root on disks with binds) gets the binds bound under that share as well.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../common/logger.js';
import { mountsUnder } from '../../common/mounts.js';
import type { GuestShape, NetSpec, PoolNetProvider, RootDisks, WarmVm } from '../driver.js';
import { layoutFor } from './args.js';
import { copyPremountBase, placeholderDisks, swapDisks } from './disks.js';
import type { QemuVm } from './process.js';
import { newRunId, startClone, type TemplateStore } from './template.js';

interface PoolMember extends WarmVm {
  vm: QemuVm;
  templateKey: string;
}

export class ClonePool {
  private ready = new Map<string, PoolMember[]>();
  private filling = new Map<string, number>();
  /** Per shape key: the wait before the next attempt after a failed start. */
  private retryMs = new Map<string, number>();
  private closed = false;
  netProvider: PoolNetProvider | undefined;

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
          if (this.closed || m.templateKey !== key) return m.discard();
          const list = this.ready.get(key) ?? [];
          list.push(m);
          this.ready.set(key, list);
          m.vm.once('exit', () => this.ready.set(key, (this.ready.get(key) ?? []).filter((x) => x !== m)));
          this.retryMs.delete(key);
        })
        .catch((err: Error) => {
          // Try again later (a template being rebuilt, a busy host), backing off, rather than stay empty.
          const wait = Math.min((this.retryMs.get(key) ?? 500) * 2, 30_000);
          this.retryMs.set(key, wait);
          this.logger.warn(`warm pool: ${err.message} (trying again in ${wait / 1000} s)`);
          const timer = setTimeout(() => this.fill(shape), wait);
          timer.unref();
        })
        .finally(() => this.filling.set(key, (this.filling.get(key) ?? 1) - 1));
    }
  }

  private async startMember(shape: GuestShape): Promise<PoolMember> {
    const template = await this.templates.ensure(shape);
    const runDir = path.join(this.runRoot, `pool-${newRunId()}`);
    const shareDir = path.join(runDir, 'share');
    fs.mkdirSync(shareDir, { recursive: true });
    const provider = this.netProvider;
    const tap = provider?.create();
    const net: NetSpec = tap ? { forwards: [], tap } : { forwards: [] };
    const releaseTap = () => {
      if (tap) provider!.remove(tap);
    };
    try {
      // A root on disks: placeholders now, the container's disks when it is taken (swapDisks);
      // with a pre-mounted upper, its own copy of the template's, which becomes the container's.
      let upper: PoolMember['upperDisk'];
      if (template.upperBase) {
        upper = { file: path.join(runDir, 'upper.ext4'), premountedFrom: template.key };
        await copyPremountBase(template.upperBase, upper.file);
      }
      const disks = layoutFor(shape).disks ? { ...placeholderDisks(runDir, upper?.file), premountedFrom: upper?.premountedFrom } : undefined;
      const readOnlyDir = disks ? path.join(runDir, 'ro') : undefined;
      if (readOnlyDir) fs.mkdirSync(readOnlyDir, { mode: 0o700 });
      const vm = await startClone(template, { runDir, rootPath: shareDir, paused: true, net, disks, readOnlyDir });
      const member: PoolMember = { vm, net, shareDir, templateKey: template.key, discard: () => (discardRunDir(vm, runDir), releaseTap()) };
      if (disks && readOnlyDir) member.attachDisks = (real) => attach(vm, runDir, readOnlyDir, real, upper);
      member.upperDisk = upper;
      return member;
    } catch (err) {
      releaseTap();
      throw err;
    }
  }

  /** Takes a ready (paused) VM for the shape with a NIC of KIND, or undefined if none is ready. */
  take(shape: GuestShape, kind: 'tap' | 'builtin'): WarmVm | undefined {
    const key = this.templates.keyOf(shape);
    const list = this.ready.get(key) ?? [];
    const i = list.findIndex((m) => (kind === 'tap') === !!m.net.tap);
    const m = i >= 0 ? list.splice(i, 1)[0] : undefined;
    this.fill(shape);
    return m;
  }

  /** Stops every pool VM (daemon shutdown). */
  async drain(): Promise<void> {
    this.closed = true;
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(
      all.map(async (m) => {
        m.discard();
        await m.vm.waitExit();
      }),
    );
  }

  get readyCount(): number {
    return [...this.ready.values()].reduce((n, l) => n + l.length, 0);
  }

  /** Shapes with a pool: the default one from the start, others since a start first asked for one. */
  get shapeCount(): number {
    return new Set([...this.ready.keys(), ...this.filling.keys()]).size;
  }
}

/**
 * Puts a container's disks behind a pool VM's: both, or with a pre-mounted
 * upper only the lower, once the container's upper is checked to be that VM's
 * own file (a hard link to it) and not some other disk.
 */
async function attach(vm: QemuVm, runDir: string, readOnlyDir: string, real: RootDisks, upper: PoolMember['upperDisk']): Promise<void> {
  if (upper) {
    const [a, b] = [fs.statSync(real.upper), fs.statSync(upper.file)];
    if (a.ino !== b.ino || a.dev !== b.dev || real.premountedFrom !== upper.premountedFrom) throw new Error("the container's disk is not the pool VM's pre-mounted one");
  }
  await swapDisks(vm, runDir, readOnlyDir, real, !!upper);
}

/**
 * Stops VM and, once it is gone, removes its run directory, unless something is
 * still mounted under it: a run directory is never removed through a mount.
 */
export function discardRunDir(vm: QemuVm, runDir: string): void {
  vm.stop();
  void vm.waitExit().then(() => {
    if (mountsUnder(runDir).length) return;
    fs.rmSync(runDir, { recursive: true, force: true });
  });
}
