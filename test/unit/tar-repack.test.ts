/** Re-packing tars for roots read and written through the guest (src/sandbox/tar-repack.ts). */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { confinedEntries, packTreeNames, repack, type HeaderMap } from '../../src/sandbox/tar-repack.js';

type Entry = { name: string; type?: tar.Header['type']; linkname?: string; body?: string };

async function tarOf(entries: Entry[]): Promise<Readable> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname }, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Readable.from([Buffer.concat(chunks)]);
}

async function entriesOf(raw: Readable, map: HeaderMap): Promise<Array<{ name: string; linkname?: string | null; body: string }>> {
  const out: Array<{ name: string; linkname?: string | null; body: string }> = [];
  const extract = tar.extract();
  const repacked = repack(raw, map);
  repacked.once('error', (err) => extract.destroy(err));
  repacked.pipe(extract);
  for await (const e of extract) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    out.push({ name: e.header.name, linkname: e.header.linkname, body: Buffer.concat(chunks).toString() });
  }
  return out;
}

describe('tar re-packing', () => {
  it("names busybox's entries as packTree does: no ./ prefix, no root entry, hard links too", async () => {
    const raw = await tarOf([
      { name: './', type: 'directory' },
      { name: './etc/', type: 'directory' },
      { name: './etc/passwd', body: 'root:x:0:0\n' },
      { name: './etc/link', type: 'link', linkname: './etc/passwd' },
    ]);
    const got = await entriesOf(raw, packTreeNames);
    assert.deepEqual(got.map((e) => e.name), ['etc/', 'etc/passwd', 'etc/link']);
    assert.equal(got[1]!.body, 'root:x:0:0\n');
    assert.equal(got[2]!.linkname, 'etc/passwd');
  });

  it('keeps a client archive under its directory: ".." and paths through its own symlinks fail', async () => {
    const ok = await entriesOf(await tarOf([{ name: '/abs', body: 'a' }, { name: 'd/../f', body: 'b' }, { name: '..dots', body: 'c' }]), confinedEntries());
    assert.deepEqual(ok.map((e) => e.name), ['abs', 'f', '..dots']);
    for (const entries of [
      [{ name: '../x', body: 'x' }],
      [{ name: 'a/../../x', body: 'x' }],
      [{ name: 'esc', type: 'symlink' as const, linkname: '/' }, { name: 'esc/x', body: 'x' }],
      [{ name: 'h', type: 'link' as const, linkname: '../../etc/passwd' }],
    ]) {
      await assert.rejects(entriesOf(await tarOf(entries), confinedEntries()), /escapes the root filesystem/, JSON.stringify(entries));
    }
  });
});
