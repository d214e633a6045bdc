/**
 * A cgroup per VM (as root): QEMU's memory, task count and CPU bounded from
 * the guest's shape, so one runaway or compromised QEMU cannot take the host's
 * memory or fork-bomb it. cgroup v2 when the host has the unified hierarchy at
 * /sys/fs/cgroup, else the v1 memory, pids and cpu hierarchies. Every VM's
 * group lives under `hyperbox/`, named after its run directory and its launch
 * (a run directory may see a second launch while the first VM's group is still
 * being removed); the jail's record in the run directory names it again after a
 * daemon restart.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { GuestShape } from '../driver.js';

const ROOT = process.env.HYPERBOX_CGROUP_ROOT ?? '/sys/fs/cgroup';
const PARENT = 'hyperbox';

/** QEMU's own memory on top of guest RAM: code, the TCG translation buffer (64 MiB), 9p and I/O buffers. */
export const QEMU_OVERHEAD_MIB = 256;
/** Tasks (threads) a QEMU may have: its vCPUs, main loop, RCU and I/O worker pools (9p uses up to 64). */
export const QEMU_MAX_TASKS = 256;
const CPU_PERIOD_US = 100_000;

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** CPU time per period, in microseconds: the guest's vCPUs fully busy and no more. */
  cpuQuotaUs: number;
  cpuPeriodUs: number;
}

/** The limits of a VM of SHAPE (pure). */
export function limitsFor(shape: Pick<GuestShape, 'memoryMiB' | 'cpus'>): CgroupLimits {
  return {
    memoryBytes: (shape.memoryMiB + QEMU_OVERHEAD_MIB) * 1024 * 1024,
    pids: QEMU_MAX_TASKS,
    cpuQuotaUs: Math.max(1, shape.cpus) * CPU_PERIOD_US,
    cpuPeriodUs: CPU_PERIOD_US,
  };
}

type Layout = { kind: 'v2'; dir: string } | { kind: 'v1'; dirs: Record<'memory' | 'pids' | 'cpu', string> };

let layout: Layout | null | undefined;

/** Where VM groups go on this host, or null (not root, or no writable hierarchy). */
function hostLayout(): Layout | null {
  if (layout !== undefined) return layout;
  layout = null;
  if (process.getuid?.() !== 0) return layout;
  try {
    if (fs.existsSync(path.join(ROOT, 'cgroup.controllers'))) {
      const dir = path.join(ROOT, PARENT);
      fs.mkdirSync(dir, { recursive: true });
      // Children of hyperbox/ get the memory, pids and cpu controllers.
      for (const d of [ROOT, dir]) fs.writeFileSync(path.join(d, 'cgroup.subtree_control'), '+memory +pids +cpu');
      layout = { kind: 'v2', dir };
    } else {
      const dirs = { memory: '', pids: '', cpu: '' };
      for (const c of ['memory', 'pids', 'cpu'] as const) {
        dirs[c] = path.join(ROOT, c, PARENT);
        fs.mkdirSync(dirs[c], { recursive: true });
      }
      layout = { kind: 'v1', dirs };
    }
  } catch {
    layout = null; // read-only or missing hierarchy: VMs run unbounded (said by `hyperbox info`)
  }
  return layout;
}

/** The group name of the VM launched (LAUNCH) in RUNDIR. */
function groupName(runDir: string, launch: string): string {
  if (!/^[0-9a-f]{1,32}$/.test(launch)) throw new Error(`bad launch id ${launch}`);
  return `vm-${createHash('sha256').update(path.resolve(runDir)).digest('hex').slice(0, 12)}-${launch}`;
}

/** The directories of group NAME, one per hierarchy. */
function groupDirs(name: string): string[] {
  const l = hostLayout();
  if (!l || !/^vm-[0-9a-f-]+$/.test(name)) return [];
  return l.kind === 'v2' ? [path.join(l.dir, name)] : Object.values(l.dirs).map((d) => path.join(d, name));
}

/**
 * Creates the group of the VM launched (LAUNCH) in RUNDIR with the limits of
 * SHAPE; returns its name and the `cgroup.procs` files the VM's process must
 * write itself into before it execs QEMU (so no thread starts outside), or
 * undefined where cgroups are not usable.
 */
export function createVmCgroup(runDir: string, shape: Pick<GuestShape, 'memoryMiB' | 'cpus'>, launch: string): { name: string; procs: string[] } | undefined {
  const l = hostLayout();
  if (!l) return undefined;
  const lim = limitsFor(shape);
  const name = groupName(runDir, launch);
  const write = (dir: string, file: string, value: string | number) => fs.writeFileSync(path.join(dir, file), String(value));
  if (l.kind === 'v2') {
    const dir = path.join(l.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    write(dir, 'memory.max', lim.memoryBytes);
    write(dir, 'memory.swap.max', 0);
    write(dir, 'pids.max', lim.pids);
    write(dir, 'cpu.max', `${lim.cpuQuotaUs} ${lim.cpuPeriodUs}`);
    return { name, procs: [path.join(dir, 'cgroup.procs')] };
  }
  const mem = path.join(l.dirs.memory, name);
  const pids = path.join(l.dirs.pids, name);
  const cpu = path.join(l.dirs.cpu, name);
  for (const d of [mem, pids, cpu]) fs.mkdirSync(d, { recursive: true });
  write(mem, 'memory.limit_in_bytes', lim.memoryBytes);
  write(pids, 'pids.max', lim.pids);
  write(cpu, 'cpu.cfs_period_us', lim.cpuPeriodUs);
  write(cpu, 'cpu.cfs_quota_us', lim.cpuQuotaUs);
  return { name, procs: [mem, pids, cpu].map((d) => path.join(d, 'cgroup.procs')) };
}

/** Removes group NAME once its processes are gone; false while some remain. */
export function removeVmCgroup(name: string): boolean {
  let done = true;
  for (const dir of groupDirs(name)) {
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') done = false;
    }
  }
  return done;
}

/** Removes groups under hyperbox/ that hold no process (VMs that ended while no daemon ran). */
export function sweepEmptyCgroups(): void {
  const l = hostLayout();
  if (!l) return;
  for (const parent of l.kind === 'v2' ? [l.dir] : Object.values(l.dirs)) {
    for (const name of fs.readdirSync(parent)) {
      if (!name.startsWith('vm-')) continue;
      try {
        // A group made in the last minute may be one another daemon is about to fill.
        if (Date.now() - fs.statSync(path.join(parent, name)).mtimeMs < 60_000) continue;
        if (fs.readFileSync(path.join(parent, name, 'cgroup.procs'), 'utf8').trim() === '') fs.rmdirSync(path.join(parent, name));
      } catch {
        /* in use or already gone */
      }
    }
  }
}

/** Whether VMs get cgroups on this host (for `info` and tests). */
export function cgroupsUsable(): string | undefined {
  const l = hostLayout();
  return l ? `cgroup ${l.kind}` : undefined;
}
