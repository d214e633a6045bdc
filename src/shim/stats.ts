/**
 * A container's Stats for containerd (cgroups v2 Metrics: what the CRI plugin
 * reads for `crictl stats`), from the guest's process table: the processes
 * descending from the container's own (its init and its execs), their resident
 * memory and CPU time. An approximation: CPU time of processes that have
 * already exited is not counted, and memory is RSS, not the cgroup's charge.
 */
import type { GuestStats } from '../sandbox/index.js';

/** Guest clock ticks (USER_HZ 100) in microseconds. */
const TICK_USEC = 10_000;
const PAGE = 4096;

export interface ContainerMetrics {
  pids: { current: number };
  cpu: { usage_usec: number; user_usec: number; system_usec: number };
  memory: { usage: number; anon: number };
}

export function containerMetrics(stats: GuestStats, roots: number[]): ContainerMetrics {
  const children = new Map<number, number[]>();
  for (const p of stats.processes) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const mine = new Set<number>();
  const queue = roots.filter((pid) => stats.processes.some((p) => p.pid === pid));
  while (queue.length) {
    const pid = queue.pop()!;
    if (mine.has(pid)) continue;
    mine.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  const procs = stats.processes.filter((p) => mine.has(p.pid));
  const sum = (f: (p: (typeof procs)[number]) => number) => procs.reduce((n, p) => n + f(p), 0);
  const user = sum((p) => p.utime) * TICK_USEC;
  const system = sum((p) => p.stime) * TICK_USEC;
  const rss = sum((p) => p.rssPages) * PAGE;
  return { pids: { current: procs.length }, cpu: { usage_usec: user + system, user_usec: user, system_usec: system }, memory: { usage: rss, anon: rss } };
}
