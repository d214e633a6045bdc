/**
 * `cp` into a running container cannot be raced out of its root (issue 13,
 * the Docker CVE-2018-15664 class): the container swaps a directory for a
 * symlink to /etc in a tight loop while the host copies into it 100 times;
 * the host's /etc gets nothing (the VM is frozen during each copy). About 9p roots,
 * which the host writes into (`--storage-driver overlay`): a block root's `cp` is
 * extracted by the guest, where the host's /etc is out of reach anyway.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';

function tarOf(name: string, content: string): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
}

function put(socketPath: string, p: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: p, method: 'PUT', headers: { 'Content-Type': 'application/x-tar' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('cp against a container that races it', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox(['--storage-driver', 'overlay']);
  });
  after(async () => {
    await d?.stop();
  });

  it('never writes outside the root while the container swaps a directory for a symlink', async () => {
    const r = await d.run(['run', '-d', 'busybox', 'sh', '-c', 'mkdir -p /x; while true; do rm -rf /x/d; mkdir /x/d; rm -rf /x/d; ln -s /etc /x/d; done']);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const name = `hb-race-${randomBytes(4).toString('hex')}`;
    const body = await tarOf(name, 'escaped\n');
    const codes = new Map<number, number>();
    for (let i = 0; i < 100; i++) {
      const code = await put(d.socket, `/v1.51/containers/${id}/archive?path=/x/d`, body);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    assert.equal(fs.existsSync(`/etc/${name}`), false, 'a copy landed in the host /etc');
    // The copies went somewhere inside (the directory, or the container's own /etc through its link).
    assert.ok((codes.get(200) ?? 0) > 0, JSON.stringify([...codes]));
    assert.equal((await d.run(['inspect', '-f', '{{.State.Status}}', id])).stdout.trim(), 'running', 'the container runs on after the copies');
    await d.run(['rm', '-f', id]);
  });
});
