/** Content store: verified writes, crash safety, dangling images and garbage collection. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { ContentStore, MediaType } from '../../src/images/store.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const roots: string[] = [];
after(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function tmpStore(): ContentStore {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hbstore-'));
  roots.push(root);
  return new ContentStore(root);
}

/** Writes a tiny one-layer image and returns its manifest digest. */
async function addImage(store: ContentStore, layerText: string, ref?: string): Promise<string> {
  const layer = await store.putBlob(Buffer.from(layerText));
  const cfg = await store.putBlob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [layer.digest] } })));
  const man = await store.putBlob(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, ...cfg }, layers: [{ mediaType: MediaType.ociLayer, ...layer }] })),
  );
  if (ref) store.tag(ref, man.digest);
  else store.addUntagged(man.digest);
  return man.digest;
}

describe('content store', () => {
  it('refuses a blob whose digest or size does not match, leaving nothing behind', async () => {
    const s = tmpStore();
    const data = Buffer.from('hello');
    await assert.rejects(s.putBlob(data, { digest: sha(Buffer.from('other')) }), /digest mismatch/);
    await assert.rejects(s.putBlob(Readable.from([data]), { size: 3 }), /larger than its declared size/);
    await assert.rejects(s.putBlob(data, { size: 9 }), /size mismatch/);
    assert.deepEqual(fs.readdirSync(s.blobDir), []);
    assert.equal((await s.putBlob(data, { digest: sha(data), size: 5 })).digest, sha(data));
  });

  it('sweeps half-written blobs left by a crash and detects a corrupted blob on read', async () => {
    const s = tmpStore();
    fs.writeFileSync(path.join(s.blobDir, '.tmp-deadbeef'), 'partial');
    const reopened = new ContentStore(s.root);
    assert.deepEqual(fs.readdirSync(reopened.blobDir), []);
    const { digest } = await reopened.putBlob(Buffer.from('{"a":1}'));
    fs.writeFileSync(reopened.blobPath(digest), '{"a":2}');
    assert.throws(() => reopened.readBlob(digest), /is corrupt/);
  });

  it('keeps an image that loses its last tag as dangling, and gc frees only unreferenced blobs', async () => {
    const s = tmpStore();
    const first = await addImage(s, 'layer-one', 'app:1');
    const second = await addImage(s, 'layer-two', 'app:1');
    const images = s.list();
    assert.equal(images.length, 2);
    assert.deepEqual(images.find((i) => i.manifestDigest === first)?.refs, []);
    assert.deepEqual(images.find((i) => i.manifestDigest === second)?.refs, ['app:1']);

    const blobsBefore = fs.readdirSync(s.blobDir).length;
    assert.equal(s.gc().removed.length, 0, 'everything is still referenced');
    s.deleteImage(first);
    const result = s.gc();
    assert.equal(result.removed.length, 3, 'manifest, config and layer of the deleted image');
    assert.equal(fs.readdirSync(s.blobDir).length, blobsBefore - 3);
    assert.equal(s.resolve('app:1').manifestDigest, second);
  });

  it('does not collect while a writer holds a lease', async () => {
    const s = tmpStore();
    await s.withLease(async () => {
      await s.putBlob(Buffer.from('not yet referenced'));
      assert.equal(s.gc().deferred, true);
      assert.equal(fs.readdirSync(s.blobDir).length, 1);
    });
    assert.equal(s.gc().removed.length, 1);
  });
});
