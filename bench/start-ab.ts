/**
 * bench/start-ab: one start against another, interleaved, so a busy spell of a
 * shared machine hits both sides alike (bench/start times its modes one after
 * another, which cannot resolve a 40 ms difference here). Two daemons take
 * `run --rm [-v benchvol:/data] busybox true` in turn, alternating which goes
 * first; pools are full before the first timed start. Prints wall medians, the
 * median of the paired ratios, how each start came about and the daemon's phase
 * medians.
 * Usage: node dist/bench/start-ab.js pool [runs=20] [novol]   warm pool vs clone, roots on disks
 *        node dist/bench/start-ab.js storage [runs=20]        roots on disks vs 9p roots, cloned and pooled
 */
import { TestDaemon } from '../test/helpers/daemon.js';

interface Side {
  name: string;
  args: string[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The starts the daemon logged after offset FROM: how each VM came to be, and its phases. */
function startsIn(log: string, from: number): Array<{ mode: string; phases: Record<string, number> }> {
  return [...log.slice(from).matchAll(/started \w+ in \d+ ms as (\w+) (\{.*?\})\\?"?$/gm)].map((m) => ({
    mode: m[1]!,
    phases: JSON.parse(m[2]!.replace(/\\"/g, '"')) as Record<string, number>,
  }));
}

/** Pools hold at least this many ready VMs (`info`), 0 for a daemon without one. */
async function poolFull(d: TestDaemon, ready: number): Promise<void> {
  if (ready) await d.waitPool(ready, 180_000);
}

async function ab(runs: number, run: string[], a: Side, b: Side, poolReady: (s: Side) => number): Promise<void> {
  const daemons = [new TestDaemon(a.args), new TestDaemon(b.args)] as const;
  try {
    for (const d of daemons) {
      await d.start();
      await d.importBusybox();
      const r = await d.run(run); // warm-up: image filesystem, templates, and (with a volume) the first ask of its pool
      if (r.code !== 0) throw new Error(`warm-up: ${r.stderr}`);
    }
    await Promise.all([poolFull(daemons[0], poolReady(a)), poolFull(daemons[1], poolReady(b))]);
    const from = daemons.map((d) => d.log.length);
    const times: [number[], number[]] = [[], []];
    for (let i = 0; i < runs; i++) {
      for (const side of i % 2 ? [1, 0] : [0, 1]) {
        const t0 = performance.now();
        const r = await daemons[side]!.run(run);
        if (r.code !== 0) throw new Error(`${[a, b][side]!.name}: ${r.stderr}`);
        times[side]!.push(performance.now() - t0);
      }
    }
    console.log(`${runs} interleaved runs of '${run.join(' ')}'`);
    [a, b].forEach((side, i) => {
      const starts = startsIn(daemons[i]!.log, from[i]!);
      const modes = [...new Set(starts.map((s) => s.mode))].map((m) => `${m} ${starts.filter((s) => s.mode === m).length}`).join(', ');
      const phases = Object.keys(starts[0]?.phases ?? {}).map((p) => `${p} ${median(starts.map((s) => s.phases[p] ?? 0))}`);
      console.log(`  ${side.name.padEnd(22)} wall median ${median(times[i]!).toFixed(0)} ms (min ${Math.min(...times[i]!).toFixed(0)}); modes: ${modes}; phase medians (ms): ${phases.join(', ')}`);
    });
    // Each B start against the A start next to it: less sensitive to a slow minute than the medians.
    const paired = median(times[1].map((t, i) => t / times[0][i]!));
    console.log(`  ${b.name} / ${a.name}: medians ${(median(times[1]) / median(times[0])).toFixed(2)}x, paired ${paired.toFixed(2)}x`);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
  }
}

const [what, runsArg, flag] = process.argv.slice(2);
const runs = Number(runsArg ?? 20);
if (what === 'pool') {
  const volume = flag === 'novol' ? [] : ['-v', 'benchvol:/data'];
  console.log('bench/start-ab pool: warm pool against clone, roots on disks');
  // With a volume, two pools fill: the disks+share shape's (on first need) and the disks-only one.
  await ab(runs, ['run', '--rm', ...volume, 'busybox', 'true'], { name: 'clone', args: ['--storage-driver', 'block'] }, { name: 'pool', args: ['--storage-driver', 'block', '--pool-size', '2'] }, (s) => (s.name === 'pool' ? (volume.length ? 4 : 2) : 0));
} else if (what === 'storage') {
  console.log('bench/start-ab storage: roots on disks against 9p roots');
  const run = ['run', '--rm', 'busybox', 'true'];
  await ab(runs, run, { name: 'clone, 9p root', args: ['--storage-driver', 'overlay'] }, { name: 'clone, root on disks', args: ['--storage-driver', 'block'] }, () => 0);
  const pooled = (driver: string) => ['--storage-driver', driver, '--pool-size', '2'];
  await ab(runs, run, { name: 'pool, 9p root', args: pooled('overlay') }, { name: 'pool, root on disks', args: pooled('block') }, () => 2);
} else {
  console.error('usage: node dist/bench/start-ab.js pool [runs] [novol] | storage [runs]');
  process.exit(2);
}
