/** save/load: round trips, interchange with skopeo, the docker CLI, and hostile archives. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { busyboxTar, startDaemonWithBusybox, TestDaemon } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';

let d: TestDaemon;
let work: string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

before(async () => {
  d = await startDaemonWithBusybox();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-archive-'));
});
after(async () => {
  await d?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

async function tarOf(entries: Array<{ name: string; data: Buffer | string }>, truncateTo?: number): Promise<string> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name }, e.data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  let buf = Buffer.concat(chunks);
  if (truncateTo !== undefined) buf = buf.subarray(0, truncateTo);
  const file = path.join(work, `crafted-${sha(buf).slice(0, 8)}.tar`);
  fs.writeFileSync(file, buf);
  return file;
}

/** A legacy docker-archive (<id>/layer.tar, <hex>.json, manifest.json) around the busybox rootfs. */
async function legacyArchive(opts: { layerName?: string; diffId?: string; config?: string } = {}): Promise<string> {
  const layer = fs.readFileSync(busyboxTar);
  const config = opts.config ?? JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [opts.diffId ?? `sha256:${sha(layer)}`] } });
  const configHex = sha(Buffer.from(config));
  return tarOf([
    { name: 'abc123/layer.tar', data: layer },
    { name: `${configHex}.json`, data: config },
    { name: 'manifest.json', data: JSON.stringify([{ Config: `${configHex}.json`, RepoTags: ['legacy:1'], Layers: [opts.layerName ?? 'abc123/layer.tar'] }]) },
  ]);
}

describe('save and load', () => {
  it('round-trips busybox into a fresh daemon, same image ID, and it runs', async () => {
    const file = path.join(work, 'bb.tar');
    assert.equal((await d.run(['save', '-o', file, 'busybox'])).code, 0);
    const id = (await d.run(['inspect', '-f', '{{.Id}}', 'busybox'])).stdout.trim();
    const other = new TestDaemon();
    await other.start();
    try {
      const r = await other.run(['load', '-i', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Loaded image: busybox:latest\n');
      assert.equal((await other.run(['inspect', '-f', '{{.Id}}', 'busybox'])).stdout.trim(), id);
      assert.equal((await other.run(['run', '--rm', 'busybox', 'echo', 'ok'])).stdout, 'ok\n');
    } finally {
      await other.stop();
    }
  });

  it('is read by skopeo, and loads what skopeo writes (OCI layout, gzip layers) and a legacy docker-archive', async () => {
    const file = path.join(work, 'bb2.tar');
    assert.equal((await d.run(['save', '-o', file, 'busybox'])).code, 0);
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `docker-archive:${file}`], { encoding: 'utf8' })) as { Os: string; Layers: string[] };
    assert.equal(inspect.Os, 'linux');
    assert.equal(inspect.Layers.length, 1);

    const oci = path.join(work, 'oci');
    execFileSync('skopeo', ['copy', '--quiet', `docker-archive:${file}`, `oci:${oci}:v9`, '--dest-compress', '--dest-compress-format', 'gzip']);
    const ociTar = path.join(work, 'oci.tar');
    execFileSync('tar', ['-cf', ociTar, '-C', oci, '.']);
    const r = await d.run(['load', '-i', ociTar]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Loaded image ID: sha256:[0-9a-f]{64}\n$/, 'a bare OCI ref name (v9) names no repository');

    const legacy = await d.run(['load', '-i', await legacyArchive()]);
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.equal(legacy.stdout, 'Loaded image: legacy:1\n');
    assert.equal((await d.run(['run', '--rm', 'legacy:1', 'echo', 'legacy-ok'])).stdout, 'legacy-ok\n');
  });

  it('the docker CLI saves and loads through hyperboxd', async () => {
    const file = path.join(work, 'docker.tar');
    const s = await docker(d, ['save', '-o', file, 'busybox']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal((await docker(d, ['tag', 'busybox', 'copy:1'])).code, 0);
    assert.equal((await docker(d, ['rmi', 'copy:1'])).code, 0);
    const l = await docker(d, ['load', '-i', file]);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /Loaded image: busybox:latest/);
  });

  it('refuses hostile or broken archives with a clear error and leaves the image list unchanged', async () => {
    const images = async () => (await d.run(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'])).stdout;
    const before = await images();
    const canary = path.join(os.tmpdir(), `hbt-load-canary-${process.pid}`);
    const layer = fs.readFileSync(busyboxTar);
    const cases: Array<[string, Promise<string>, RegExp]> = [
      ['layer path escaping', legacyArchive({ layerName: '../../../../etc/passwd' }), /layer "..\/..\/..\/..\/etc\/passwd" is not in the archive/],
      ['absolute layer path', legacyArchive({ layerName: '/etc/passwd' }), /is not in the archive/],
      ['digest mismatch', legacyArchive({ diffId: `sha256:${'0'.repeat(64)}` }), /does not match the image config/],
      ['config not JSON', legacyArchive({ config: 'this is not json' }), /image config is not valid/],
      ['truncated', tarOf([{ name: 'abc/layer.tar', data: layer }], 700_000), /malformed archive|unexpected end/i],
      ['not an archive of images', tarOf([{ name: `..${canary}`, data: 'x' }]), /not an image archive/],
    ];
    for (const [what, filePromise, message] of cases) {
      const r = await d.run(['load', '-i', await filePromise]);
      assert.equal(r.code, 1, `${what}: exit code`);
      assert.match(r.stderr, message, what);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
    }
    assert.equal(await images(), before);
    assert.equal(fs.existsSync(canary), false);
  });
});
