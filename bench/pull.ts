/**
 * bench/pull: pull + prepare a multi-layer image of over 200 MB from a local
 * registry, against `skopeo copy` + `umoci unpack` of the same image in the same
 * invocation, and the time to prepare a second container of that image (under
 * the default storage driver: for block roots, the first create builds the
 * image's erofs filesystem, a second one only gets a blank writable disk).
 * Usage: node dist/bench/pull.js [runs=3]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repo, TestDaemon } from '../test/helpers/daemon.js';
import { TestRegistry } from '../test/helpers/registry.js';

const runs = Number(process.argv[2] ?? 3);
const debianTar = path.join(repo, 'build/debian-rootfs.tar');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-pull-'));
const reg = new TestRegistry();
await reg.start();
const image = `${reg.host}/bench/debian:big`;

// The image: Debian minbase (one layer) + 96 MB of incompressible data (a second layer) + a small third layer.
// Built on a 9p-root daemon: its containers' writable layers are host directories to write into.
{
  const d = new TestDaemon(['--storage-driver', 'overlay']);
  await d.start();
  try {
    let r = await d.run(['import', debianTar, 'bench-base:1'], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(r.stderr);
    r = await d.run(['create', '--name', 'builder', 'bench-base:1', 'true']);
    const id = (await d.run(['inspect', '-f', '{{.Id}}', 'builder'])).stdout.trim();
    const upper = path.join(d.dataRoot, 'data', 'containers', id, 'rootfs');
    fs.mkdirSync(path.join(upper, 'data'), { recursive: true });
    for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(upper, 'data', `blob${i}`), randomBytes(16 * 1024 * 1024));
    r = await d.run(['commit', 'builder', 'bench-mid:1'], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(r.stderr);
    await d.run(['rm', 'builder']);
    r = await d.run(['create', '--name', 'builder2', 'bench-mid:1', 'true']);
    const id2 = (await d.run(['inspect', '-f', '{{.Id}}', 'builder2'])).stdout.trim();
    fs.writeFileSync(path.join(d.dataRoot, 'data', 'containers', id2, 'rootfs', 'etc', 'bench-marker'), 'x\n');
    r = await d.run(['commit', 'builder2', 'bench-top:1'], { timeoutMs: 300_000 });
    const saved = path.join(work, 'image.tar');
    r = await d.run(['save', '-o', saved, 'bench-top:1'], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(r.stderr);
    execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `docker-archive:${saved}`, `docker://${image}`], { stdio: 'inherit' });
  } finally {
    await d.stop();
  }
}
const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${image}`], { encoding: 'utf8' })) as { layers: Array<{ size: number }> };
const compressed = raw.layers.reduce((n, l) => n + l.size, 0);

const hyperbox: number[] = [];
const second: number[] = [];
for (let i = 0; i < runs; i++) {
  const d = new TestDaemon(['--no-clone']);
  await d.start();
  try {
    const t0 = performance.now();
    const p = await d.run(['pull', '-q', image], { timeoutMs: 600_000 });
    if (p.code !== 0) throw new Error(p.stderr);
    const c = await d.run(['create', image, 'true'], { timeoutMs: 600_000 }); // prepares the image's root filesystem
    if (c.code !== 0) throw new Error(c.stderr);
    hyperbox.push(performance.now() - t0);
    const t1 = performance.now();
    const c2 = await d.run(['create', image, 'true']);
    if (c2.code !== 0) throw new Error(c2.stderr);
    second.push(performance.now() - t1);
  } finally {
    await d.stop();
  }
}

const baseline: number[] = [];
for (let i = 0; i < runs; i++) {
  const dir = path.join(work, `oci-${i}`);
  const t0 = performance.now();
  execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${image}`, `oci:${dir}:big`]);
  execFileSync('umoci', ['unpack', '--image', `${dir}:big`, path.join(work, `bundle-${i}`)], { stdio: 'ignore' });
  baseline.push(performance.now() - t0);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(path.join(work, `bundle-${i}`), { recursive: true, force: true });
}
await reg.stop();
fs.rmSync(work, { recursive: true, force: true });

const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const h = median(hyperbox);
const b = median(baseline);
console.log(`image: ${raw.layers.length} layers, ${mb(compressed)} compressed (gzip, pushed by skopeo), ${runs} runs each, medians`);
console.log(`hyperbox pull + prepare rootfs:        ${h.toFixed(0)} ms`);
console.log(`skopeo copy + umoci unpack (baseline): ${b.toFixed(0)} ms`);
console.log(`ratio hyperbox / baseline:             ${(h / b).toFixed(2)}x`);
console.log(`second container of the same image:    ${median(second).toFixed(0)} ms (hyperbox create, nothing unpacked)`);
