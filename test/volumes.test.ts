/** Volumes (issue 6): binds, named volumes, tmpfs, read-only roots, and escapes. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, TestDaemon, until } from './helpers/daemon.js';

describe('volumes', () => {
  let d: TestDaemon;
  let tmp: string;
  before(async () => {
    d = await startDaemonWithBusybox();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-vol-'));
  });
  after(async () => {
    await d?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('keeps a named volume across containers; :ro refuses writes (clone, then cold boot)', async () => {
    const w = await d.run(['run', '--rm', '-v', 'data:/data', 'busybox', 'sh', '-c', 'echo persisted > /data/f']);
    assert.equal(w.code, 0, w.stderr);
    const r = await d.run(['run', '--rm', '-v', 'data:/data:ro', 'busybox', 'sh', '-c', 'cat /data/f; echo x > /data/g']);
    assert.equal(r.stdout, 'persisted\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Read-only file system/);
    const cold = await d.run(['run', '--rm', '--no-clone', '-v', 'data:/data', 'busybox', 'cat', '/data/f']);
    assert.equal(cold.code, 0, cold.stderr);
    assert.equal(cold.stdout, 'persisted\n');
    const inspect = JSON.parse((await d.run(['volume', 'inspect', 'data'])).stdout)[0];
    assert.equal(inspect.Name, 'data');
    assert.equal(inspect.Driver, 'local');
    assert.equal(fs.readFileSync(path.join(inspect.Mountpoint, 'f'), 'utf8'), 'persisted\n');
  });

  it('refuses to remove a volume in use; ls, rm, anonymous volumes and rm -v', async () => {
    const id = (await d.run(['run', '-d', '-v', 'busy:/b', 'busybox', 'sleep', '100'])).stdout.trim();
    assert.ok(id);
    assert.match((await d.run(['volume', 'ls', '-q'])).stdout, /^busy$/m);
    const refused = await d.run(['volume', 'rm', 'busy']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /volume is in use/);
    const mounts = JSON.parse((await d.run(['inspect', '-f', '{{json .Mounts}}', id])).stdout);
    assert.equal(mounts[0].Type, 'volume');
    assert.equal(mounts[0].Name, 'busy');
    assert.equal(mounts[0].Destination, '/b');
    assert.equal((await d.run(['rm', '-f', id])).code, 0);
    assert.equal((await d.run(['volume', 'rm', 'busy'])).code, 0);
    assert.doesNotMatch((await d.run(['volume', 'ls', '-q'])).stdout, /^busy$/m);
    // An anonymous volume goes with its container under rm -v.
    const before = (await d.run(['volume', 'ls', '-q'])).stdout.trim().split('\n').filter(Boolean).length;
    const c = (await d.run(['create', '-v', '/anon', 'busybox', 'true'])).stdout.trim();
    assert.equal((await d.run(['volume', 'ls', '-q'])).stdout.trim().split('\n').filter(Boolean).length, before + 1);
    assert.equal((await d.run(['rm', '-v', c])).code, 0);
    assert.equal((await d.run(['volume', 'ls', '-q'])).stdout.trim().split('\n').filter(Boolean).length, before);
  });

  it('fills a new volume with the image content at its path', async () => {
    const r = await d.run(['run', '--rm', '-v', 'bins:/bin', 'busybox', 'true']);
    assert.equal(r.code, 0, r.stderr);
    const mp = (await d.run(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'bins'])).stdout.trim();
    assert.ok(fs.existsSync(path.join(mp, 'busybox')));
  });

  it('never lets a symlink or .. in a bind mount reach host files', async () => {
    const share = path.join(tmp, 'share');
    fs.mkdirSync(share);
    const secret = `canary-${randomBytes(8).toString('hex')}`;
    const canary = path.join(tmp, 'canary');
    fs.writeFileSync(canary, `${secret}\n`);
    fs.symlinkSync('/etc', path.join(share, 'etc'));
    fs.symlinkSync('../canary', path.join(share, 'rel'));
    fs.symlinkSync(canary, path.join(share, 'abs'));
    const script = [
      'cat /mnt/etc/hostname',
      'cat /mnt/rel /mnt/abs /mnt/../canary /mnt/../../canary 2>/dev/null',
      `cat /mnt/../../../../../../..${canary} 2>/dev/null`,
      'ln -s /etc /mnt/guest-made',
      'echo done',
    ].join('; ');
    const r = await d.run(['run', '--rm', '--hostname', 'inside', '-v', `${share}:/mnt`, 'busybox', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(secret), `host file leaked: ${r.stdout}`);
    assert.ok(!r.stdout.includes(fs.readFileSync('/etc/hostname', 'utf8').trim()) || os.hostname() === 'inside', r.stdout);
    assert.match(r.stdout, /^inside\n/);
    assert.match(r.stdout, /done\n$/);
    // The guest's symlink is just a symlink on the host: nothing was written through it.
    assert.equal(fs.readlinkSync(path.join(share, 'guest-made')), '/etc');
  });

  it('--tmpfs is a tmpfs inside; --read-only refuses writes to the root', async () => {
    const r = await d.run(['run', '--rm', '--read-only', '--tmpfs', '/scratch:size=8m', '-v', `${tmp}:/host`, 'busybox', 'sh', '-c',
      'grep " /scratch " /proc/mounts; echo ok > /scratch/f && cat /scratch/f; echo rw > /host/rw-ok && echo host-rw; touch /rootfile']);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /^tmpfs \/scratch tmpfs rw,nosuid,nodev,noexec.*size=8192k/m);
    assert.match(r.stdout, /^ok$/m);
    assert.match(r.stdout, /^host-rw$/m);
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(fs.readFileSync(path.join(tmp, 'rw-ok'), 'utf8'), 'rw\n');
  });

  // Pool VMs serve 9p roots with binds; a block root with binds starts as a clone.
  it('bind mounts reach a warm-pool VM too (9p roots), and the network works there', async () => {
    const share = path.join(tmp, 'pool-share');
    fs.mkdirSync(share);
    fs.writeFileSync(path.join(share, 'f'), 'seen by the pool VM\n');
    const p = new TestDaemon(['--storage-driver', 'overlay', '--pool-size', '1']);
    await p.start();
    try {
      await p.importBusybox();
      // A cold boot under TCG on a loaded 2-core machine can take a while; the daemon's log says why if it never comes.
      await until('pool ready', async () => /^Warm Pool: 1 ready of 1$/m.test((await p.run(['info'])).stdout), 150_000).catch((err: Error) => {
        throw new Error(`${err.message}\n--- daemon log tail\n${p.log.split('\n').slice(-30).join('\n')}`);
      });
      const id = (await p.run(['run', '-d', '-v', `${share}:/mnt`, 'busybox', 'sh', '-c', 'cat /mnt/f; cat /proc/net/route | wc -l; echo w > /mnt/back; sleep 1000'])).stdout.trim();
      assert.equal((await p.run(['inspect', '-f', '{{.HyperBox.Start.mode}}', id])).stdout.trim(), 'pool');
      await until('output', async () => (await p.run(['logs', id])).stdout === 'seen by the pool VM\n3\n');
      assert.equal(fs.readFileSync(path.join(share, 'back'), 'utf8'), 'w\n');
      assert.equal((await p.run(['rm', '-f', id])).code, 0);
      assert.equal(fs.readFileSync(path.join(share, 'f'), 'utf8'), 'seen by the pool VM\n', 'the bind source survived rm');
    } finally {
      await p.stop();
    }
  });
});
