/**
 * bench/density: how many idle containers one host holds (issue 13, item 7).
 * Starts N idle containers (`run -d busybox sleep infinity`, one after the
 * other, through a daemon of its own: own data root, socket and templates) and
 * prints, for the first 10 (the baseline, measured in the same run) and for all
 * N: the proportional memory per VM (PSS of the QEMU processes, and the drop of
 * the host's MemAvailable, per VM), host CPU while idle (/proc/stat over 20 s,
 * as a fraction of all cores, and the CPU time of the QEMUs per VM), `ps`
 * latency (median of 5), and the start time of the last 10 against the first
 * 10. Stops starting early if MemAvailable would fall below 2 GiB, a start
 * fails 3 times in a row, or one takes over 60 s (and says how far it got).
 * Then removes them all.
 * Usage: node dist/bench/density.js [N=300]   (or N=... in the environment;
 * BIP=cidr for the default bridge: a /22 when N > 250, as a /24 holds 253)
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { TestDaemon } from '../test/helpers/daemon.js';

const N = Number(process.argv[2] ?? process.env.N ?? 300);
const BASE = Math.min(10, N);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 20);
const MIN_AVAILABLE = 2 * 1024 ** 3;
const GiB = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;
const MiB = (b: number) => `${(b / 1024 ** 2).toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function memAvailable(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
}

/** Busy and total jiffies of all cores (/proc/stat `cpu` line; idle and iowait are idle). */
function hostCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

/** utime + stime of a process, in clock ticks (0 if it is gone). */
function procTicks(pid: number): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** The QEMU processes of this bench's daemon (their command lines name its data root). */
function qemuPids(dataRoot: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmd.startsWith('qemu-system') && cmd.includes(`${dataRoot}/`);
      } catch {
        return false;
      }
    });
}

function pssBytes(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]) * 1024;
  } catch {
    return 0;
  }
}

/** One Docker API GET over the daemon's socket: wall time in ms. */
function apiGet(socket: string, p: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: socket, path: p }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - t0));
    });
    req.on('error', reject);
  });
}

interface Snapshot {
  n: number;
  pssPerVm: number;
  availDropPerVm: number;
  hostBusy: number;
  qemuCoresPerVm: number;
  daemonCores: number;
  psCliMs: number;
  psApiMs: number;
  psRows: number;
  clocksources: string;
}

async function snapshot(d: TestDaemon, memBase: number, ids: string[]): Promise<Snapshot> {
  const n = ids.length;
  await sleep(5000); // let the last guests settle into idle
  const pids = qemuPids(d.dataRoot);
  const daemonPid = d.proc!.pid!;
  const h0 = hostCpu();
  const q0 = pids.map(procTicks);
  const d0 = procTicks(daemonPid);
  const t0 = performance.now();
  await sleep(IDLE_SECONDS * 1000);
  const secs = (performance.now() - t0) / 1000;
  const h1 = hostCpu();
  const qemuTicks = pids.map(procTicks).reduce((a, t, i) => a + Math.max(0, t - q0[i]!), 0);
  const hz = 100; // USER_HZ
  const pss = pids.reduce((a, p) => a + pssBytes(p), 0);
  const avail = memAvailable();
  const cli: number[] = [];
  let psRows = 0;
  for (let i = 0; i < 5; i++) {
    const s = performance.now();
    const r = await d.run(['ps', '-q'], { timeoutMs: 300_000 });
    cli.push(performance.now() - s);
    psRows = r.stdout.split('\n').filter(Boolean).length;
  }
  const api: number[] = [];
  for (let i = 0; i < 5; i++) api.push(await apiGet(d.socket, '/containers/json'));
  // What the guests run on: the first and the last container's clocksource.
  const cs: string[] = [];
  for (const id of [ids[0]!, ids.at(-1)!]) {
    const r = await d.run(['exec', id, 'cat', '/sys/devices/system/clocksource/clocksource0/current_clocksource'], { timeoutMs: 120_000 });
    cs.push(r.code === 0 ? r.stdout.trim() : `? (${r.stderr.trim().slice(0, 80)})`);
  }
  return {
    n,
    pssPerVm: pss / Math.max(1, pids.length),
    availDropPerVm: (memBase - avail) / n,
    hostBusy: (h1.busy - h0.busy) / (h1.total - h0.total),
    qemuCoresPerVm: qemuTicks / hz / secs / Math.max(1, pids.length),
    daemonCores: (procTicks(daemonPid) - d0) / hz / secs,
    psCliMs: median(cli),
    psApiMs: median(api),
    psRows,
    clocksources: [...new Set(cs)].join(', '),
  };
}

function report(base: Snapshot | undefined, all: Snapshot, startMs: number[], stopReason: string): void {
  const cores = os.cpus().length;
  const first = median(startMs.slice(0, BASE));
  const last = median(startMs.slice(-BASE));
  const col = (s: Snapshot | undefined, f: (s: Snapshot) => string) => (s ? f(s) : '-').padStart(16);
  const ratio = (f: (s: Snapshot) => number) => (base && Number.isFinite(f(all) / f(base)) ? `${(f(all) / f(base)).toFixed(2)}x` : '').padStart(9);
  const row = (label: string, f: (s: Snapshot) => string, num: (s: Snapshot) => number) => console.log(`${label.padEnd(34)}${col(base, f)}${col(all, f)}${ratio(num)}`);
  console.log('');
  console.log(`bench/density: ${all.n} idle containers (busybox 'sleep infinity', started one by one) on ${cores} cores${stopReason ? `, stopped early: ${stopReason}` : ''}`);
  console.log(`${'figure'.padEnd(34)}${`first ${base?.n ?? '-'}`.padStart(16)}${`all ${all.n}`.padStart(16)}${'ratio'.padStart(9)}`);
  row('PSS per VM (QEMU smaps_rollup)', (s) => MiB(s.pssPerVm), (s) => s.pssPerVm);
  row('MemAvailable drop per VM', (s) => MiB(s.availDropPerVm), (s) => s.availDropPerVm);
  const ours = (s: Snapshot) => (s.qemuCoresPerVm * s.n + s.daemonCores) / cores;
  row(`host CPU busy, all ${cores} cores`, (s) => `${(s.hostBusy * 100).toFixed(1)} %`, (s) => s.hostBusy);
  row('  of which QEMUs + daemon', (s) => `${(ours(s) * 100).toFixed(1)} %`, ours);
  row('QEMU CPU per idle VM (cores)', (s) => s.qemuCoresPerVm.toFixed(4), (s) => s.qemuCoresPerVm);
  row('  all QEMUs (cores)', (s) => (s.qemuCoresPerVm * s.n).toFixed(3), (s) => s.qemuCoresPerVm * s.n);
  row('  daemon (cores)', (s) => s.daemonCores.toFixed(3), (s) => s.daemonCores);
  row("'hyperbox ps' wall, median of 5", (s) => `${s.psCliMs.toFixed(0)} ms`, (s) => s.psCliMs);
  row('GET /containers/json, median of 5', (s) => `${s.psApiMs.toFixed(0)} ms`, (s) => s.psApiMs);
  row("rows in 'ps'", (s) => String(s.psRows), (s) => s.psRows);
  row('guest clocksource (first, last)', (s) => s.clocksources, () => NaN);
  console.log(`start ('run -d' wall): first ${BASE} median ${first.toFixed(0)} ms, last ${BASE} median ${last.toFixed(0)} ms = ${(last / first).toFixed(2)}x; slowest ${Math.max(...startMs).toFixed(0)} ms`);
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(
    `targets (${all.n} containers): host CPU under 30 % ${verdict(ours(all) < 0.3)} for this bench's processes` +
      `${all.hostBusy >= 0.3 ? ` (the whole host was ${(all.hostBusy * 100).toFixed(0)} % busy: other work shares it)` : ''}; ` +
      `ps under 1 s ${verdict(all.psCliMs < 1000)}; ` +
      `last starts within 2x of the first ${verdict(last / first <= 2)}`,
  );
}

async function main(): Promise<void> {
  // The default bridge is a /24 (253 addresses): a larger subnet for more containers.
  const bip = process.env.BIP ?? (N > 250 ? '10.88.252.1/22' : undefined);
  const d = new TestDaemon(bip ? ['--bip', bip] : [], {}, { ownTemplates: true });
  let stopping = false;
  const cleanup = async () => {
    if (stopping) return;
    stopping = true;
    await d.stop();
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().then(() => process.exit(130)));
  const ids: string[] = [];
  try {
    await d.start();
    await d.importBusybox();
    const warm = await d.run(['run', '--rm', 'busybox', 'true'], { timeoutMs: 300_000 }); // builds the template
    if (warm.code !== 0) throw new Error(`warm-up run failed: ${warm.stderr}`);
    const tpl = fs.readdirSync(d.templateDir).filter((k) => !k.startsWith('.'));
    const clock = tpl.map((k) => JSON.parse(fs.readFileSync(path.join(d.templateDir, k, 'meta.json'), 'utf8')).clock ?? '?');
    const accel = /accelerator: (\w+)/.exec(d.log)?.[1] ?? '?';
    console.log(`daemon ready (accelerator ${accel}; template clock: ${clock.join(', ')}); MemAvailable ${GiB(memAvailable())}; starting ${N}`);
    const memBase = memAvailable();
    const startMs: number[] = [];
    let base: Snapshot | undefined;
    let stopReason = '';
    let failures = 0;
    while (ids.length < N) {
      const avail = memAvailable();
      const perVm = ids.length ? Math.max(32 * 1024 ** 2, (memBase - avail) / ids.length) : 64 * 1024 ** 2;
      if (avail - 2 * perVm < MIN_AVAILABLE) {
        stopReason = `MemAvailable ${GiB(avail)} would go below ${GiB(MIN_AVAILABLE)} (${ids.length} of ${N} started)`;
        break;
      }
      const t0 = performance.now();
      const r = await d.run(['run', '-d', 'busybox', 'sleep', 'infinity'], { timeoutMs: 300_000 });
      const ms = performance.now() - t0;
      if (r.code !== 0) {
        console.log(`start #${ids.length + 1} failed (${ms.toFixed(0)} ms): ${r.stderr.trim()}`);
        if (++failures >= 3) {
          stopReason = `3 starts in a row failed (${ids.length} of ${N} started)`;
          break;
        }
        continue;
      }
      failures = 0;
      ids.push(r.stdout.trim());
      startMs.push(ms);
      if (ids.length % 10 === 0 || ids.length === N) {
        console.log(`  ${ids.length}/${N} up; last start ${ms.toFixed(0)} ms; MemAvailable ${GiB(memAvailable())}; load ${os.loadavg()[0]!.toFixed(2)}`);
      }
      if (ids.length === BASE && N > BASE) {
        base = await snapshot(d, memBase, ids);
        console.log(`  baseline at ${BASE}: host CPU ${(base.hostBusy * 100).toFixed(1)} %, ${base.qemuCoresPerVm.toFixed(4)} cores per VM, ps ${base.psCliMs.toFixed(0)} ms`);
      }
      if (ms > 60_000) {
        stopReason = `a start took ${(ms / 1000).toFixed(0)} s (${ids.length} of ${N} started)`;
        break;
      }
    }
    if (ids.length === 0) throw new Error(`no container started: ${stopReason}`);
    const all = await snapshot(d, memBase, ids);
    report(base, all, startMs, stopReason);
  } finally {
    if (ids.length) {
      const t0 = performance.now();
      for (let i = 0; i < ids.length; i += 50) await d.run(['rm', '-f', ...ids.slice(i, i + 50)], { timeoutMs: 600_000 });
      console.log(`removed ${ids.length} containers in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    await cleanup();
  }
}

await main();
