/**
 * bench/critest: cri-tools' CRI validation suite (critest) against a containerd
 * of its own, with runtime handler runc and then hyperbox in one run (issue 16,
 * item 4): their pass, fail and skip counts side by side, and the specs that
 * failed with the first line of each failure. Images: stand-ins in a local
 * registry (test/helpers/critest.ts); pods on a CNI bridge.
 * Usage: node dist/bench/critest.js [ginkgo focus regex] (default: the whole suite)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { countState, CritestBed, specName } from '../test/helpers/critest.js';

const HANDLERS = ['runc', 'hyperbox'] as const;
const focus = process.argv[2] ?? '';
/** critest's output for HANDLER, kept after the run. */
const logOf = (handler: string) => path.join(os.tmpdir(), `hyperbox-critest-${handler}.log`);

const bed = new CritestBed();
try {
  await bed.start();
  const results = HANDLERS.map((handler) => {
    const run = bed.run(handler, focus);
    fs.writeFileSync(logOf(handler), run.output);
    return { handler, ...run };
  });
  const runcFailed = new Set(results[0]!.specs.filter((s) => s.State === 'failed').map(specName));
  const version = spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.split(' ')[2] ?? '?';
  console.log(`critest (cri-tools v1.34.0${focus ? `, focus ${JSON.stringify(focus)}` : ''}), containerd ${version}:`);
  for (const r of results) {
    console.log(`  ${r.handler.padEnd(9)} ${countState(r.specs, 'passed')} passed, ${countState(r.specs, 'failed')} failed, ${countState(r.specs, 'skipped', 'pending')} skipped (${r.seconds.toFixed(0)} s)`);
  }
  for (const r of results) {
    for (const s of r.specs.filter((x) => x.State === 'failed')) {
      const alsoRunc = r.handler === 'hyperbox' && runcFailed.has(specName(s)) ? ' (fails with runc too)' : '';
      const why = (s.Failure?.Message ?? '').split('\n').find((l) => l.trim())?.trim().slice(0, 240) ?? '';
      console.log(`  FAIL ${r.handler}: ${specName(s)}${alsoRunc}\n       ${why}`);
    }
  }
  console.log(`  critest's output: ${HANDLERS.map(logOf).join(', ')}`);
} finally {
  await bed.stop();
}
