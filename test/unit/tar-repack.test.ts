/** Re-packing tars for roots read and written through the guest (src/sandbox/tar-repack.ts). */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { confinedEntries, packTreeNames, repack, type HeaderMap } from '../../src/sandbox/tar-repack.js';
import { readTar, tarOf } from './tar-fixtures.js';

async function entriesOf(raw: Readable, map: HeaderMap): Promise<Array<{ name: string; linkname?: string | null; body: string }>> {
  return (await readTar(repack(raw, map))).map(({ header, body }) => ({ name: header.name, linkname: header.linkname, body }));
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
