/** Hostile layer archives are refused or confined: nothing outside the root is touched. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { applyLayer } from '../../src/images/layer.js';

type Entry = Partial<tar.Header> & { name: string; body?: string };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const { body, ...h } = e;
    pack.entry(h as tar.Header, body ?? "");
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

const bases: string[] = [];
after(() => {
  for (const b of bases) fs.rmSync(b, { recursive: true, force: true });
});

function sandbox() {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hbl-'));
  bases.push(base);
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(root);
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'host data');
  return { base, root, outside };
}

// Layers carry owners (lchown) and file capabilities, as the daemon (root) applies them.
const isRoot = process.getuid?.() === 0;

describe('layer apply', { skip: isRoot ? false : 'applies file owners and capabilities: needs root, as hyperboxd does' }, () => {
  it('applies files, dirs, symlinks, hardlinks, modes, owners and whiteouts (gzip too)', async () => {
    const { root } = sandbox();
    await applyLayer(root, Readable.from([zlib.gzipSync(await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/conf', body: 'v1', mode: 0o640, uid: 1000, gid: 1000 },
      { name: 'etc/gone', body: 'x' },
      { name: 'opaque/old', body: 'x' },
      { name: 'bin/tool', body: '#!/bin/sh', mode: 0o4755 },
      { name: 'bin/link', type: 'symlink', linkname: 'tool' },
      { name: 'bin/hard', type: 'link', linkname: 'bin/tool' },
    ]))]));
    await applyLayer(root, Readable.from([await makeTar([
      { name: 'etc/.wh.gone', body: '' },
      { name: 'opaque/.wh..wh..opq', body: '' },
      { name: 'opaque/new', body: 'n' },
    ])]));
    assert.equal(fs.readFileSync(path.join(root, 'etc/conf'), 'utf8'), 'v1');
    const st = fs.statSync(path.join(root, 'etc/conf'));
    assert.equal(st.mode & 0o777, 0o640);
    assert.equal(st.uid, 1000);
    assert.equal(fs.statSync(path.join(root, 'bin/tool')).mode & 0o7777, 0o4755);
    assert.equal(fs.readlinkSync(path.join(root, 'bin/link')), 'tool');
    assert.equal(fs.statSync(path.join(root, 'bin/hard')).ino, fs.statSync(path.join(root, 'bin/tool')).ino);
    assert.equal(fs.existsSync(path.join(root, 'etc/gone')), false);
    assert.deepEqual(fs.readdirSync(path.join(root, 'opaque')), ['new']);
  });

  it('applies a zstd layer and refuses a corrupt one', async () => {
    const { root, base } = sandbox();
    const plain = path.join(base, 'layer.tar');
    fs.writeFileSync(plain, await makeTar([{ name: 'z/file', body: 'zstd body' }]));
    execFileSync('zstd', ['-q', '-f', plain, '-o', `${plain}.zst`]);
    const zst = fs.readFileSync(`${plain}.zst`);
    await applyLayer(root, Readable.from([zst]));
    assert.equal(fs.readFileSync(path.join(root, 'z/file'), 'utf8'), 'zstd body');
    const corrupt = Buffer.concat([zst.subarray(0, 8), Buffer.alloc(64, 0xff)]);
    await assert.rejects(applyLayer(path.join(base, 'outside'), Readable.from([corrupt])), /zstd|truncated|tar/i);
  });

  it('applies user xattrs and file capabilities byte for byte, and skips others', async () => {
    const { root, base } = sandbox();
    const src = path.join(base, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'ping'), 'binary');
    // A VFS capability (cap_net_raw+ep), binary with NUL and high bytes: what UTF-8 decoding would mangle.
    const cap = '0x0100000200200000000000000000000000000000';
    execFileSync('setfattr', ['-n', 'security.capability', '-v', cap, path.join(src, 'ping')]);
    execFileSync('setfattr', ['-n', 'user.note', '-v', '0x00ff10', path.join(src, 'ping')]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', src]);
    const tarFile = path.join(base, 'x.tar');
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--format=pax', '-cf', tarFile, '-C', src, '.']);
    await applyLayer(root, Readable.from([fs.readFileSync(tarFile)]));
    const dump = (p: string) => execFileSync('getfattr', ['-d', '-m', '-', '-e', 'hex', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const got = dump(path.join(root, 'ping'));
    assert.match(got, new RegExp(`security\\.capability=${cap}`));
    assert.match(got, /user\.note=0x00ff10/);
    assert.doesNotMatch(dump(root), /trusted\.overlay/, 'an image cannot set overlayfs markers');
  });

  it('refuses ../ paths', async () => {
    const { root, outside } = sandbox();
    await assert.rejects(applyLayer(root, Readable.from([await makeTar([{ name: '../outside/evil', body: 'x' }])])), /escapes the root/);
    assert.deepEqual(fs.readdirSync(outside), ['secret']);
  });

  it('confines absolute paths to the root', async () => {
    const { root, outside } = sandbox();
    await applyLayer(root, Readable.from([await makeTar([{ name: `${outside}/abs`, body: 'x' }])]));
    assert.deepEqual(fs.readdirSync(outside), ['secret']);
    assert.equal(fs.readFileSync(path.join(root, outside, 'abs'), 'utf8'), 'x');
  });

  it('does not write through a symlink that points outside', async () => {
    const { root, outside } = sandbox();
    await applyLayer(root, Readable.from([await makeTar([
      { name: 'esc', type: 'symlink', linkname: outside },
      { name: 'esc/secret', body: 'overwritten' },
      { name: 'rel', type: 'symlink', linkname: '../../../../outside' },
      { name: 'rel/new', body: 'x' },
    ])]));
    assert.equal(fs.readFileSync(path.join(outside, 'secret'), 'utf8'), 'host data');
    assert.deepEqual(fs.readdirSync(outside), ['secret']);
    // the writes landed inside the root, where the link resolves when root is "/"
    assert.equal(fs.readFileSync(path.join(root, outside, 'secret'), 'utf8'), 'overwritten');
  });

  it('refuses a hard link to a host path', async () => {
    const { root, outside } = sandbox();
    await assert.rejects(
      applyLayer(root, Readable.from([await makeTar([{ name: 'h', type: 'link', linkname: path.join(outside, 'secret') }])])),
      /not a file in this image/,
    );
    await assert.rejects(applyLayer(root, Readable.from([await makeTar([{ name: 'h', type: 'link', linkname: '../outside/secret' }])])), /escapes/);
    assert.equal(fs.statSync(path.join(outside, 'secret')).nlink, 1);
  });

  it('refuses a layer larger than the size limit and a truncated archive', async () => {
    const { root } = sandbox();
    const big = await makeTar([{ name: 'big', body: 'x'.repeat(4096) }]);
    await assert.rejects(applyLayer(root, Readable.from([big]), { maxBytes: 1024 }), /size limit/);
    await assert.rejects(applyLayer(root, Readable.from([big.subarray(0, 700)])), /malformed|Unexpected end|premature/i);
  });
});
