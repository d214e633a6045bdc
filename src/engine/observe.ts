/**
 * `top` and `stats`: what runs in a container's VM and what it costs. The guest
 * agent reports its own view (processes, memory, CPU time from /proc); the host
 * adds what the VM costs it (the QEMU process's RSS, CPU time and I/O, which
 * includes every 9p file operation of the container).
 */
import { conflict } from '../common/errors.js';
import type { GuestProcessInfo, GuestStats } from '../agent/stats.js';
import type { HostUsage } from '../vm/index.js';
import type { Container } from './container.js';

const TICK_NS = 10_000_000; // USER_HZ = 100

function requireRunning(c: Container): NonNullable<Container['sandbox']> {
  if (!c.running) throw conflict(`Container ${c.id} is not running`);
  if (c.record.State.Paused) throw conflict(`Container ${c.id} is paused, unpause the container before running top or exec`);
  if (!c.sandbox) throw conflict(`Container ${c.id} is not running`);
  return c.sandbox;
}

function clock(ticks: number): string {
  const s = Math.floor(ticks / 100);
  return [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, '0')).join(':');
}

/** Docker's `top` answer: ps -ef columns. */
export async function top(c: Container): Promise<{ Titles: string[]; Processes: string[][] }> {
  const sandbox = requireRunning(c);
  const stats = await sandbox.agent.stats();
  const bootMs = Date.now() - stats.uptimeSeconds * 1000;
  const row = (p: GuestProcessInfo) => {
    const started = new Date(bootMs + p.startTicks * 10);
    return [
      String(p.uid),
      String(p.pid),
      String(p.ppid),
      '0',
      `${String(started.getUTCHours()).padStart(2, '0')}:${String(started.getUTCMinutes()).padStart(2, '0')}`,
      '?',
      clock(p.utime + p.stime),
      p.command,
    ];
  };
  return { Titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'], Processes: stats.processes.map(row) };
}

export interface StatsSample {
  at: Date;
  guest: GuestStats | undefined;
  host: HostUsage;
}

export async function sample(c: Container): Promise<StatsSample> {
  const sandbox = c.sandbox;
  const vm = sandbox?.vm ?? c.stalled?.vm;
  const empty = { rssBytes: 0, cpuNs: 0, readBytes: 0, writeBytes: 0 };
  if (!c.running || !vm) return { at: new Date(), guest: undefined, host: empty };
  // A paused VM cannot answer (a stalled one has no agent yet); its memory and host usage are still there.
  const guest = c.record.State.Paused || !sandbox ? undefined : await sandbox.agent.stats().catch(() => undefined);
  return { at: new Date(), guest, host: vm.hostUsage() };
}

function cpuStats(s: StatsSample | undefined, cpus: number) {
  return {
    cpu_usage: { total_usage: (s?.guest?.cpuBusyTicks ?? 0) * TICK_NS, usage_in_kernelmode: 0, usage_in_usermode: 0 },
    system_cpu_usage: (s?.guest?.cpuTotalTicks ?? 0) * TICK_NS,
    online_cpus: cpus,
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  };
}

/** One entry of Docker's stats stream (the fields the docker CLI reads), plus ours. */
export function statsJson(c: Container, cur: StatsSample, prev: StatsSample | undefined) {
  const cpus = Math.max(1, Math.ceil(c.record.HostConfig.NanoCpus / 1e9));
  const g = cur.guest;
  return {
    read: cur.at.toISOString(),
    preread: prev?.at.toISOString() ?? '0001-01-01T00:00:00Z',
    name: c.name,
    id: c.id,
    pids_stats: { current: g?.processes.length ?? 0 },
    cpu_stats: cpuStats(cur, cpus),
    precpu_stats: cpuStats(prev, cpus),
    memory_stats: g ? { usage: g.memTotal - g.memAvailable, limit: g.memTotal, stats: {} } : {},
    blkio_stats: {
      io_service_bytes_recursive: [
        { major: 0, minor: 0, op: 'read', value: cur.host.readBytes },
        { major: 0, minor: 0, op: 'write', value: cur.host.writeBytes },
      ],
    },
    num_procs: 0,
    storage_stats: {},
    hyperbox: { vm_rss_bytes: cur.host.rssBytes, vm_cpu_ns: cur.host.cpuNs },
  };
}
