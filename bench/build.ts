/**
 * bench/build: a five-step Dockerfile (FROM busybox, COPY, RUN, RUN, CMD)
 * built cold (--no-cache), rebuilt unchanged (all cached), and rebuilt after a
 * one-line change of its last RUN (only that step runs), against the time of
 * its two RUN commands alone done with `run --rm` in the same invocation.
 * Usage: node dist/bench/build.js [runs=3]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemonWithBusybox } from '../test/helpers/daemon.js';

const runs = Number(process.argv[2] ?? 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const RUN1 = 'mkdir -p /app/out && cp /app/input.txt /app/out/copy.txt';
const run2 = (n: number) => `wc -c /app/out/copy.txt > /app/out/size-${n}.txt`;
const dockerfile = (n: number) => `FROM busybox\nCOPY input.txt /app/\nRUN ${RUN1}\nRUN ${run2(n)}\nCMD ["cat", "/app/out/copy.txt"]\n`;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-build-'));
fs.writeFileSync(path.join(work, 'input.txt'), 'x'.repeat(64 * 1024));
const d = await startDaemonWithBusybox();
const rows = { cold: [] as number[], unchanged: [] as number[], oneLine: [] as number[], runs: [] as number[], oneRun: [] as number[] };

async function timed(args: string[], check?: (out: string) => void): Promise<number> {
  const t0 = performance.now();
  const r = await d.run(args, { timeoutMs: 300_000 });
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  check?.(r.stdout);
  return ms;
}

try {
  // Warm-up: the VM template and busybox's unpacked root exist before anything is timed.
  await timed(['run', '--rm', 'busybox', 'true']);
  for (let i = 0; i < runs; i++) {
    fs.writeFileSync(path.join(work, 'Dockerfile'), dockerfile(i * 2));
    rows.cold.push(await timed(['build', '--no-cache', '-t', 'bench-build', work], (o) => {
      if (o.includes('Using cache')) throw new Error(`cold build used the cache:\n${o}`);
    }));
    rows.unchanged.push(await timed(['build', '-t', 'bench-build', work], (o) => {
      if ((o.match(/Using cache/g) ?? []).length !== 4) throw new Error(`unchanged rebuild ran steps:\n${o}`);
    }));
    fs.writeFileSync(path.join(work, 'Dockerfile'), dockerfile(i * 2 + 1));
    rows.oneLine.push(await timed(['build', '-t', 'bench-build', work], (o) => {
      if ((o.match(/Running in/g) ?? []).length !== 1) throw new Error(`one-line rebuild ran other steps:\n${o}`);
    }));
    // Baseline: the two RUN commands alone, each in its own `run --rm` (what the builder's RUN steps do).
    const a = await timed(['run', '--rm', 'bench-build', 'sh', '-c', RUN1]);
    const b = await timed(['run', '--rm', 'bench-build', 'sh', '-c', run2(i)]);
    rows.runs.push(a + b);
    rows.oneRun.push(b);
  }
} finally {
  await d.stop();
  fs.rmSync(work, { recursive: true, force: true });
}

const m = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, median(v)])) as Record<keyof typeof rows, number>;
const f = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
console.log(`bench/build: five-step Dockerfile, median of ${runs} runs (hyperbox CLI, classic builder API)`);
console.log(`  its 2 RUN commands alone (run --rm x2)   ${f(m.runs)}`);
console.log(`  cold build (--no-cache)                   ${f(m.cold)}   ${(m.cold / m.runs).toFixed(2)}x the RUNs alone`);
console.log(`  unchanged rebuild (all cached)            ${f(m.unchanged)}   ${(m.unchanged / m.runs).toFixed(2)}x`);
console.log(`  one-line change of the last RUN           ${f(m.oneLine)}   ${(m.oneLine / m.oneRun).toFixed(2)}x that RUN alone (${f(m.oneRun)})`);
