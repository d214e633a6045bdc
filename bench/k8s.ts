/**
 * bench/k8s: a pod through containerd's CRI plugin, hyperbox against runc, in
 * one run (issue 16, item 7): the time of `crictl runp` (pod sandbox) and of
 * `crictl create` + `start` of its first container, median of N rounds each,
 * alternating the runtimes. A containerd of its own (test/helpers/containerd.ts:
 * own root, state, socket; the node's network, no CNI), the busybox image of
 * build/busybox-rootfs.tar. Each pod is removed before the next.
 * Usage: node dist/bench/k8s.js [N=5]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { busyboxArchive, IMAGE, TestContainerd } from '../test/helpers/containerd.js';

const N = Number(process.argv[2] ?? 5);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const ctd = new TestContainerd();
await ctd.start();
try {
  const archive = busyboxArchive(ctd.dir);
  if (ctd.ctr(['image', 'import', '--base-name', 'docker.io/library/busybox', archive], { namespace: 'k8s.io' }).code !== 0) throw new Error('image import failed');
  const cri = (args: string[]) => {
    const r = ctd.crictl(args);
    if (r.code !== 0) throw new Error(`crictl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const ctrJson = path.join(ctd.dir, 'ctr.json');
  fs.writeFileSync(ctrJson, JSON.stringify({ metadata: { name: 'app' }, image: { image: IMAGE }, command: ['sleep', '600'] }));
  const times: Record<string, { runp: number[]; first: number[] }> = { hyperbox: { runp: [], first: [] }, runc: { runp: [], first: [] } };
  for (let i = 0; i < N; i++) {
    for (const handler of ['hyperbox', 'runc']) {
      const podJson = path.join(ctd.dir, `pod-${handler}-${i}.json`);
      fs.writeFileSync(podJson, JSON.stringify({ metadata: { name: `b-${handler}-${i}`, namespace: 'default', uid: `u-${handler}-${i}`, attempt: 0 }, linux: { security_context: { namespace_options: { network: 2 } } } }));
      const t0 = performance.now();
      const pod = cri(['runp', '--runtime', handler, podJson]);
      const t1 = performance.now();
      const id = cri(['create', pod, ctrJson, podJson]);
      cri(['start', id]);
      const t2 = performance.now();
      times[handler]!.runp.push(t1 - t0);
      times[handler]!.first.push(t2 - t1);
      cri(['stopp', pod]);
      cri(['rmp', pod]);
    }
  }
  const version = execFileSync('containerd', ['--version'], { encoding: 'utf8' }).trim().split(' ')[2];
  console.log(`pod start through containerd ${version}'s CRI, median of ${N} (ms): runp | create+start of the first container | total`);
  for (const [h, t] of Object.entries(times)) {
    console.log(`${h.padEnd(9)} ${median(t.runp).toFixed(0).padStart(6)} | ${median(t.first).toFixed(0).padStart(6)} | ${(median(t.runp) + median(t.first)).toFixed(0).padStart(6)}`);
  }
} finally {
  await ctd.stop();
}
