/** An image's unpacked root starts from another image's whose layers are a prefix of its own (a build's steps). */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import tar from 'tar-stream';
import { RootfsBuilder } from '../../src/images/rootfs.js';
import { ContentStore, MediaType, type Image } from '../../src/images/store.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-rootfs-reuse-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function layer(store: ContentStore, files: Record<string, string>): Promise<{ digest: string; size: number }> {
  const pack = tar.pack();
  for (const [name, body] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, body);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return store.putBlob(Buffer.concat(chunks));
}

async function image(store: ContentStore, layers: Array<{ digest: string; size: number }>, tag: string): Promise<Image> {
  const config = { architecture: 'amd64', os: 'linux', config: { Labels: { tag } }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } };
  const cfg = await store.putBlob(Buffer.from(JSON.stringify(config)));
  const manifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: cfg.digest, size: cfg.size }, layers: layers.map((l) => ({ mediaType: MediaType.ociLayer, ...l })) };
  const man = await store.putBlob(Buffer.from(JSON.stringify(manifest)));
  store.addUntagged(man.digest);
  return store.resolve(cfg.digest);
}

describe('rootfs reuse between images sharing layers', () => {
  it('links the root of an image with the same layers, copies a prefix and applies only the rest', async () => {
    const store = new ContentStore(path.join(tmp, 'store'));
    const builder = new RootfsBuilder(store, path.join(tmp, 'rootfs'));
    const l1 = await layer(store, { 'etc/base': 'base', 'etc/gone': 'x' });
    const l2 = await layer(store, { 'etc/.wh.gone': '', 'app/new': 'new' });
    const a = await image(store, [l1], 'a');
    const sameLayers = await image(store, [l1], 'config-only step');
    const child = await image(store, [l1, l2], 'child');
    const ra = await builder.imageRootfs(a);
    const rs = await builder.imageRootfs(sameLayers);
    const rc = await builder.imageRootfs(child);
    assert.notEqual(ra, rs);
    assert.equal(fs.statSync(path.join(rs, 'etc/base')).ino, fs.statSync(path.join(ra, 'etc/base')).ino, 'same layers: hard links');
    assert.notEqual(fs.statSync(path.join(rc, 'etc/base')).ino, fs.statSync(path.join(ra, 'etc/base')).ino, 'a prefix: a copy');
    assert.equal(fs.readFileSync(path.join(rc, 'app/new'), 'utf8'), 'new');
    assert.equal(fs.existsSync(path.join(rc, 'etc/gone')), false, "the child's whiteout applied to its copy");
    assert.equal(fs.readFileSync(path.join(ra, 'etc/gone'), 'utf8'), 'x', "and not to the parent's root");
    builder.removeImageRootfs(a.id);
    assert.equal(fs.readFileSync(path.join(rs, 'etc/base'), 'utf8'), 'base', 'removing one root leaves the linked one whole');
  });
});
