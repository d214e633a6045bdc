/**
 * bench/pool-ab: warm pool against clone for roots on disks, interleaved, so a
 * busy spell of a shared machine hits both sides alike (bench/start times its
 * modes one after another, which cannot resolve a 40 ms difference here). Two
 * block daemons, one with `--pool-size 2`, take `run --rm [-v benchvol:/data]
 * busybox true` in turn, alternating which goes first; the pool is full before
 * the first timed start. Prints wall medians and the daemon's phase medians.
 * Usage: node dist/bench/pool-ab.js [runs=20] [novol]
 */
import { TestDaemon, until } from '../test/helpers/daemon.js';

const runs = Number(process.argv[2] ?? 20);
const volume = process.argv[3] === 'novol' ? [] : ['-v', 'benchvol:/data'];
const run = ['run', '--rm', ...volume, 'busybox', 'true'];

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

async function main(): Promise<void> {
  const sides = { clone: new TestDaemon(['--storage-driver', 'block']), pool: new TestDaemon(['--storage-driver', 'block', '--pool-size', '2']) };
  try {
    for (const d of Object.values(sides)) {
      await d.start();
      await d.importBusybox();
      const r = await d.run(run); // warm-up: image filesystem, templates, and (with a volume) the first ask of its pool
      if (r.code !== 0) throw new Error(`warm-up: ${r.stderr}`);
    }
    // Both pools of the shape with a volume's share (it fills on first need) and the disks-only one.
    const full = volume.length ? 4 : 2;
    await until('the warm pool', async () => Number(/^Warm Pool: (\d+) ready/m.exec((await sides.pool.run(['info'])).stdout)?.[1]) >= full, 180_000);
    const from = { clone: sides.clone.log.length, pool: sides.pool.log.length };
    const times = { clone: [] as number[], pool: [] as number[] };
    for (let i = 0; i < runs; i++) {
      for (const side of i % 2 ? (['clone', 'pool'] as const) : (['pool', 'clone'] as const)) {
        const t0 = performance.now();
        const r = await sides[side].run(run);
        if (r.code !== 0) throw new Error(`${side}: ${r.stderr}`);
        times[side].push(performance.now() - t0);
      }
    }
    console.log(`bench/pool-ab: ${runs} interleaved runs of '${run.join(' ')}', roots on disks`);
    for (const side of ['clone', 'pool'] as const) {
      const starts = startsIn(sides[side].log, from[side]);
      const modes = [...new Set(starts.map((s) => s.mode))].map((m) => `${m} ${starts.filter((s) => s.mode === m).length}`).join(', ');
      const phases = Object.keys(starts[0]?.phases ?? {}).map((p) => `${p} ${median(starts.map((s) => s.phases[p] ?? 0))}`);
      console.log(`${side.padEnd(6)} wall median ${median(times[side]).toFixed(0)} ms (min ${Math.min(...times[side]).toFixed(0)}); modes: ${modes}; phase medians (ms): ${phases.join(', ')}`);
    }
    console.log(`pool/clone: ${(median(times.pool) / median(times.clone)).toFixed(2)}x`);
  } finally {
    await Promise.all(Object.values(sides).map((d) => d.stop()));
  }
}

await main();
