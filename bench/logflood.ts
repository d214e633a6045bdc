/**
 * bench/logflood: what one container printing as fast as it can costs the
 * others. Container B's `docker exec b true` latency (median of N) with
 * container A idle, then while A floods its stdout (`yes`, logged) for 30 s, in
 * one run, printed as a ratio (target: at most 2x). Also the log volume A wrote
 * and the daemon's CPU time and peak RSS meanwhile.
 * Usage: node dist/bench/logflood.js [runs=15] [flood seconds=30]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TestDaemon } from '../test/helpers/daemon.js';
import { dockerEnv } from '../test/helpers/docker.js';

const runs = Number(process.argv[2] ?? 15);
const floodSeconds = Number(process.argv[3] ?? 30);
const LINE = 'log-flood-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function docker(d: TestDaemon, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('docker', args, { env: dockerEnv(d), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function must(d: TestDaemon, args: string[]): Promise<string> {
  const r = await docker(d, args);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

async function execLatency(d: TestDaemon): Promise<number> {
  const t0 = performance.now();
  await must(d, ['exec', 'quiet-b', 'true']);
  return performance.now() - t0;
}

/** The daemon's CPU seconds (user + system) so far. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function statusMiB(pid: number, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

async function main(): Promise<void> {
  const d = new TestDaemon();
  await d.start();
  await d.importBusybox();
  try {
    const pid = d.proc!.pid!;
    await must(d, ['run', '-d', '--name', 'quiet-b', 'busybox', 'sleep', '1000000']);
    // A waits on a FIFO (no CPU while idle), then floods until it is killed (its log unrotated, to count it).
    const a = await must(d, ['run', '-d', '--name', 'flood-a', '--log-opt', 'max-size=2g', '--log-opt', 'max-file=1', 'busybox', 'sh', '-c', `mkfifo /dev/shm/go && read x < /dev/shm/go && exec yes ${LINE}`]);
    const logDir = path.join(d.dataRoot, 'data', 'containers', a);
    const logged = () => fs.readdirSync(logDir).filter((f) => f.startsWith('container.log')).reduce((n, f) => n + fs.statSync(path.join(logDir, f)).size, 0);
    for (let i = 0; i < 3; i++) await execLatency(d); // warm-up
    const idle: number[] = [];
    for (let i = 0; i < runs; i++) idle.push(await execLatency(d));

    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const rss0 = statusMiB(pid, 'VmRSS');
    const cpu0 = cpuSeconds(pid);
    await must(d, ['exec', 'flood-a', 'sh', '-c', 'echo go > /dev/shm/go']);
    const t0 = performance.now();
    const flooding: number[] = [];
    // Measures while A floods (a margin before its end), at least RUNS times.
    while (performance.now() - t0 < (floodSeconds - 2) * 1000) flooding.push(await execLatency(d));
    const floodMs = performance.now() - t0;
    const cpu = cpuSeconds(pid) - cpu0;
    const peak = statusMiB(pid, 'VmHWM');
    await must(d, ['kill', 'flood-a']);
    const bytes = logged();

    const mi = median(idle);
    const mf = median(flooding);
    const ms = (x: number) => `${x.toFixed(0)} ms`;
    console.log(`accelerator: ${/accelerator: (\w+)/.exec(d.log)?.[1] ?? '?'}, ${floodSeconds} s flood`);
    console.log(`exec b true, A idle:     median ${ms(mi)} (min ${ms(Math.min(...idle))}, max ${ms(Math.max(...idle))}, n=${idle.length})`);
    console.log(`exec b true, A flooding: median ${ms(mf)} (min ${ms(Math.min(...flooding))}, max ${ms(Math.max(...flooding))}, n=${flooding.length})`);
    console.log(`ratio flooding/idle: ${(mf / mi).toFixed(2)}x (target <= 2x)`);
    console.log(`A logged ${(bytes / 1e6).toFixed(1)} MB of log (${(bytes / 1e6 / (floodMs / 1000)).toFixed(1)} MB/s), daemon CPU ${cpu.toFixed(1)} s over ${(floodMs / 1000).toFixed(0)} s (${((100 * cpu) / (floodMs / 1000)).toFixed(0)} % of a core), daemon RSS ${rss0.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB`);
  } finally {
    await docker(d, ['rm', '-f', 'flood-a', 'quiet-b']);
    await d.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
