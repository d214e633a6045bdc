/**
 * bench/start: wall time of `hyperbox run --rm busybox true` per start mode,
 * against `runc run` of the same busybox rootfs, in one invocation; and the
 * start of pods (Hyper's unit): a whole pod by `kube play`, and one more
 * container in a running pod; and roots on block devices (the default storage
 * driver; the 9p rows pin `--storage-driver overlay`), cloned, from the warm pool
 * and cold-booted, and with a named volume (cloned and from the warm pool).
 * Usage: node dist/bench/start.js [runs=10]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { busyboxTar, TestDaemon } from '../test/helpers/daemon.js';

const runs = Number(process.argv[2] ?? 10);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function runcBaseline(): number[] {
  const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-runc-'));
  fs.mkdirSync(path.join(bundle, 'rootfs'));
  execFileSync('tar', ['-xf', busyboxTar, '-C', path.join(bundle, 'rootfs')]);
  execFileSync('runc', ['spec'], { cwd: bundle });
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['true'];
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const id = `hb-bench-${process.pid}-${i}`;
      times.push(timeIt(() => {
        const r = spawnSync('runc', ['run', '--bundle', bundle, id], { stdio: 'ignore' });
        if (r.status !== 0) throw new Error('runc run failed');
      }));
    }
  } finally {
    fs.rmSync(bundle, { recursive: true, force: true });
  }
  return times;
}

let accel = '?';

interface ModeResult {
  label: string;
  times: number[];
  phases: string;
  /** How the timed starts' VMs came to be (the daemon's log), e.g. "pool 10". */
  modes?: string;
}

/**
 * Times `run --rm [RUNARGS] busybox true` on a daemon started with DAEMONARGS.
 * POOLREADY: warm-pool VMs to wait for after the warm-up run (a pool that shape
 * fills on first need, as the one for roots on disks with volumes, is empty before).
 */
async function hyperboxMode(label: string, daemonArgs: string[], runArgs: string[] = [], poolReady = 0): Promise<ModeResult> {
  const d = new TestDaemon(daemonArgs);
  await d.start();
  await d.importBusybox();
  accel = /accelerator: (\w+)/.exec(d.log)?.[1] ?? accel;
  const run = ['run', '--rm', ...runArgs, 'busybox', 'true'];
  try {
    await d.run(run); // warm-up: image rootfs, caches, templates
    if (poolReady) await d.waitPool(poolReady, 180_000);
    const skip = d.log.length;
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const r = await d.run(run);
      times.push(performance.now() - t0);
      if (r.code !== 0) throw new Error(`run failed: ${r.stderr}`);
    }
    const starts = [...d.log.slice(skip).matchAll(/started \w+ in \d+ ms as (\w+) (\{.*?\})\\?"?$/gm)];
    const count = new Map<string, number>();
    for (const m of starts) count.set(m[1]!, (count.get(m[1]!) ?? 0) + 1);
    const modes = [...count].map(([m, n]) => `${m} ${n}`).join(', ');
    return { label, times, phases: starts.at(-1)?.[2]!.replace(/\\"/g, '"') ?? '', modes };
  } finally {
    await d.stop();
  }
}

async function main(): Promise<void> {
  const volume = ['-v', 'benchvol:/data'];
  const modes: Array<Parameters<typeof hyperboxMode>> = [
    // 9p roots (a host overlay shared over 9p), then the default, roots on disks.
    ['hyperbox cold boot', ['--storage-driver', 'overlay', '--no-clone']],
    ['hyperbox clone', ['--storage-driver', 'overlay']],
    ['hyperbox warm pool', ['--storage-driver', 'overlay', '--pool-size', '2'], [], 2],
    ['clone, root on disks', ['--storage-driver', 'block']],
    ['warm pool, root on disks', ['--storage-driver', 'block', '--pool-size', '2'], [], 2],
    ['cold boot, root on disks', ['--storage-driver', 'block', '--no-clone']],
    // A named volume on a root on disks: a 9p share as well as the disks (a shape of its own).
    ['clone, disks + volume', ['--storage-driver', 'block'], volume],
    ['pool, disks + volume', ['--storage-driver', 'block', '--pool-size', '2'], volume, 4],
  ];
  const results: ModeResult[] = [];
  for (const mode of modes) results.push(await hyperboxMode(...mode));
  results.push(...(await podModes()));
  const runc = runcBaseline();
  const runcMed = median(runc);
  console.log(`bench/start: ${runs} runs each, median wall time of 'run --rm busybox true' (${os.cpus().length} cores, accelerator: ${accel})`);
  console.log(`${'mode'.padEnd(24)}${'median'.padStart(10)}${'min'.padStart(10)}${'max'.padStart(10)}   vs runc`);
  const row = (label: string, xs: number[]) =>
    console.log(`${label.padEnd(24)}${median(xs).toFixed(0).padStart(8)}ms${Math.min(...xs).toFixed(0).padStart(8)}ms${Math.max(...xs).toFixed(0).padStart(8)}ms   ${(median(xs) / runcMed).toFixed(1)}x`);
  for (const r of results) {
    row(r.label, r.times);
    if (r.phases) console.log(`${''.padEnd(24)}last start phases (ms): ${r.phases}; modes: ${r.modes}`);
  }
  row('runc run (baseline)', runc);
  const cold = results.find((r) => r.label === 'hyperbox cold boot');
  for (const r of results) if (cold && r !== cold) console.log(`${r.label}: ${(median(cold.times) / median(r.times)).toFixed(1)}x faster than cold boot`);
  const pairs = [['hyperbox warm pool', 'hyperbox clone'], ['warm pool, root on disks', 'clone, root on disks'], ['pool, disks + volume', 'clone, disks + volume']];
  for (const [pool, clone] of pairs) {
    const [a, b] = [results.find((r) => r.label === pool), results.find((r) => r.label === clone)];
    if (a && b) console.log(`${pool}: ${(median(a.times) / median(b.times)).toFixed(2)}x the median of ${clone}`);
  }
  await memoryBench();
}

/** `kube play` of a one-container pod (VM clone + container), and `run --rm --pod` into a running pod. */
async function podModes(): Promise<ModeResult[]> {
  const d = new TestDaemon();
  await d.start();
  await d.importBusybox();
  const manifest = path.join(d.dataRoot, 'pod.yaml');
  fs.writeFileSync(manifest, 'apiVersion: v1\nkind: Pod\nmetadata: {name: bench}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox, command: [sleep, "1000"]}]\n');
  const must = async (args: string[]) => {
    const r = await d.run(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  };
  try {
    await must(['kube', 'play', manifest]); // warm-up
    await must(['kube', 'down', manifest]);
    const play: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await must(['kube', 'play', manifest]);
      play.push(performance.now() - t0);
      await must(['kube', 'down', manifest]);
    }
    await must(['pod', 'create', '--name', 'warm']);
    await must(['run', '-d', '--pod', 'warm', 'busybox', 'sleep', '1000']);
    const join: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await must(['run', '--rm', '--pod', 'warm', 'busybox', 'true']);
      join.push(performance.now() - t0);
    }
    return [
      { label: 'pod: kube play (1 ctr)', times: play, phases: '' },
      { label: 'pod: run --rm --pod', times: join, phases: '' },
    ];
  } finally {
    await d.stop();
  }
}

/** Proportional set size of a process, in MiB (shared pages divided among sharers). */
function pssMiB(pid: number): number {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)![1]) / 1024;
}

async function memoryBench(): Promise<void> {
  const d = new TestDaemon();
  await d.start();
  await d.importBusybox();
  try {
    const pidOf = async (id: string) => Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
    const clones: number[] = [];
    for (let i = 0; i < 10; i++) clones.push(await pidOf((await d.run(['run', '-d', 'busybox', 'sleep', '1000000'])).stdout.trim()));
    const cold = await pidOf((await d.run(['run', '-d', '--no-clone', 'busybox', 'sleep', '1000000'])).stdout.trim());
    await new Promise((r) => setTimeout(r, 3000)); // let the guests settle into idle
    const clonePss = median(clones.map(pssMiB));
    const coldPss = pssMiB(cold);
    console.log(`idle memory (PSS of the QEMU process, 10 idle clones + 1 cold running):`);
    console.log(`  cold-booted container: ${coldPss.toFixed(1)} MiB`);
    console.log(`  cloned container:      ${clonePss.toFixed(1)} MiB (median of 10)  = ${(clonePss / coldPss).toFixed(2)}x of cold`);
  } finally {
    await d.stop();
  }
}

await main();
