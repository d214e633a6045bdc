/**
 * bench/migrate: live migration between two daemons on this host (roots on
 * disks), back and forth, for an idle container and one dirtying memory (it
 * rewrites 16 MiB of tmpfs in a loop). Prints, per workload, the medians of the
 * guest's downtime (QEMU's own measure: guest stopped to guest running at the
 * destination's QEMU), the migration's total time, the RAM sent and the
 * `hyperbox migrate` wall time; and, as a baseline from the same run, the
 * wall time of a `pause` + `unpause` round trip of the same container (QMP
 * `stop` and `cont` through the API).
 * Usage: node dist/bench/migrate.js [runs=4]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestDaemon } from '../test/helpers/daemon.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function must(d: TestDaemon, args: string[], timeoutMs = 300_000): Promise<string> {
  const r = await d.run(args, { timeoutMs });
  if (r.code !== 0) throw new Error(`hyperbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const WORKLOADS: Record<string, string> = {
  idle: 'sleep 100000',
  dirtying: 'while :; do for i in 1 2 3 4 5 6 7 8; do cp /bin/busybox /dev/shm/b$i; done; done',
};

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 4);
  const daemons = [new TestDaemon(['--storage-driver', 'block']), new TestDaemon(['--storage-driver', 'block'])] as const;
  try {
    for (const d of daemons) await d.start();
    await daemons[0].importBusybox();
    const saved = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-mig-')), 'busybox.tar');
    await must(daemons[0], ['save', '-o', saved, 'busybox']);
    await must(daemons[1], ['load', '-i', saved]);
    fs.rmSync(path.dirname(saved), { recursive: true, force: true });
    for (const [name, script] of Object.entries(WORKLOADS)) {
      await must(daemons[0], ['run', '-d', '--name', name, '--network', 'slirp', 'busybox', 'sh', '-c', script]);
      const down: number[] = [];
      const paused: number[] = [];
      const total: number[] = [];
      const ram: number[] = [];
      const wall: number[] = [];
      const pause: number[] = [];
      let at = 0;
      for (let i = 0; i < runs; i++) {
        const here = daemons[at]!;
        const t = performance.now();
        await must(here, ['pause', name]);
        await must(here, ['unpause', name]);
        pause.push(performance.now() - t);
        const t0 = performance.now();
        const out = await must(here, ['migrate', name, daemons[1 - at]!.host]);
        wall.push(performance.now() - t0);
        const m = /in (\d+) ms \(guest paused (\d+) ms, QEMU downtime (-?\d+) ms, (\d+) MiB/.exec(out);
        if (!m) throw new Error(`unexpected output: ${out}`);
        total.push(Number(m[1]));
        paused.push(Number(m[2]));
        down.push(Number(m[3]));
        ram.push(Number(m[4]));
        at = 1 - at;
      }
      await must(daemons[at]!, ['rm', '-f', name]);
      console.log(
        `${name.padEnd(9)} guest paused ${median(paused)} ms (all: ${paused.join(', ')}), of which QEMU downtime ${median(down)} ms, migration ${median(total)} ms, RAM sent ${median(ram)} MiB, ` +
          `\`migrate\` wall ${Math.round(median(wall))} ms; baseline pause+unpause ${Math.round(median(pause))} ms`,
      );
    }
  } finally {
    for (const d of daemons) await d.stop().catch(() => undefined);
  }
}

await main();
