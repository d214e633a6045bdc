/** Image commands through the real CLI: images, tag, rmi (in-use rules), history, prune. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxTar, startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';

let d: TestDaemon;
const blobs = () => fs.readdirSync(path.join(d.dataRoot, 'data', 'image-store', 'blobs', 'sha256')).length;

before(async () => {
  d = await startDaemonWithBusybox();
});
after(async () => d?.stop());

describe('image commands', () => {
  it('lists images with -q, --digests and --format, and shows history', async () => {
    const ls = await d.run(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    assert.match(ls.stdout, /^busybox:latest [0-9a-f]{12}$/m);
    const q = await d.run(['images', '-q']);
    assert.match(q.stdout.trim(), /^[0-9a-f]{12}$/);
    assert.match((await d.run(['images', '--digests'])).stdout, /^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID/);
    const h = await d.run(['history', 'busybox']);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /hyperbox import/);
    const inspect = await d.run(['image', 'inspect', '-f', '{{.Os}}/{{.Architecture}} {{.Config.Cmd}}', 'busybox']);
    assert.equal(inspect.stdout.trim(), 'linux/amd64 [sh]');
  });

  it('refuses to delete an image a container uses, unless another name keeps it', async () => {
    const id = (await d.run(['create', 'busybox', 'true'])).stdout.trim();
    const refused = await d.run(['rmi', 'busybox']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /unable to remove repository reference "busybox" \(must force\) - container [0-9a-f]{12} is using/);
    const byId = await d.run(['rmi', (await d.run(['images', '-q'])).stdout.trim()]);
    assert.equal(byId.code, 1);
    assert.match(byId.stderr, /image is being used by stopped container/);
    assert.match((await d.run(['images'])).stdout, /busybox/);

    assert.equal((await d.run(['tag', 'busybox', 'keep:1'])).code, 0);
    const untag = await d.run(['rmi', 'busybox']);
    assert.equal(untag.code, 0, untag.stderr);
    assert.equal(untag.stdout.trim(), 'Untagged: busybox:latest');

    const before = blobs();
    assert.equal((await d.run(['rm', id])).code, 0);
    const gone = await d.run(['rmi', 'keep:1']);
    assert.equal(gone.code, 0, gone.stderr);
    assert.match(gone.stdout.trim(), /^Untagged: keep:1\nDeleted: sha256:[0-9a-f]{64}$/);
    assert.equal(blobs(), before - 3, 'manifest, config and layer are collected');
    await d.importBusybox();
  });

  it('keeps untagged imports as <none> and prunes them', async () => {
    const r = await d.run(['import', busyboxTar]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    assert.match((await d.run(['images'])).stdout, /^<none>\s+<none>\s+/m);
    const prune = await d.run(['image', 'prune', '-f']);
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, new RegExp(`deleted: ${id}`));
    assert.doesNotMatch((await d.run(['images'])).stdout, /<none>/);
    assert.match((await d.run(['images'])).stdout, /busybox/, 'tagged images survive a plain prune');
  });
});
