/**
 * The guest's answer to a STATS request (memory, CPU time, processes), parsed
 * from /proc text the agent copied. The guest is untrusted: every number is
 * checked and anything malformed is dropped, never thrown at the caller.
 */
import { Fields, Tag } from './protocol.js';

export interface GuestProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  state: string;
  /** CPU time in clock ticks (USER_HZ, 100 on Linux). */
  utime: number;
  stime: number;
  rssPages: number;
  /** Start time in clock ticks since guest boot. */
  startTicks: number;
  command: string;
}

export interface GuestStats {
  memTotal: number;
  memAvailable: number;
  /** Aggregate CPU time (ticks) spent not idle, and in total. */
  cpuBusyTicks: number;
  cpuTotalTicks: number;
  uptimeSeconds: number;
  processes: GuestProcessInfo[];
}

const num = (s: string | undefined): number => {
  const n = Number(s);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

function meminfo(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
  return m ? num(m[1]) * 1024 : 0;
}

export function parseStats(payload: Buffer): GuestStats {
  const f = Fields.of(payload);
  const mem = f.str(Tag.Meminfo) ?? '';
  const cpu = (f.str(Tag.CpuStat, 512) ?? '').trim().split(/\s+/).slice(1).map(num);
  // user nice system idle iowait irq softirq steal
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const processes: GuestProcessInfo[] = [];
  for (const line of f.strs(Tag.Process, 4096, 4096)) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const [pid, ppid, uid, state, utime, stime, rss, start] = line.slice(0, tab).split(' ');
    if (!/^\d+$/.test(pid ?? '') || !/^[A-Za-z]$/.test(state ?? '')) continue;
    processes.push({
      pid: num(pid),
      ppid: num(ppid),
      uid: num(uid),
      state: state!,
      utime: num(utime),
      stime: num(stime),
      rssPages: num(rss),
      startTicks: num(start),
      command: line.slice(tab + 1).replace(/[\x00-\x1f]/g, ' ').trim(),
    });
  }
  return {
    memTotal: meminfo(mem, 'MemTotal'),
    memAvailable: meminfo(mem, 'MemAvailable'),
    cpuBusyTicks: total - idle,
    cpuTotalTicks: total,
    uptimeSeconds: num((f.str(Tag.Uptime, 64) ?? '').split(' ')[0]),
    processes: processes.sort((a, b) => a.pid - b.pid),
  };
}
