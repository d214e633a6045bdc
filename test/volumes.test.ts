/** Volumes (issue 6): binds, named volumes, tmpfs, read-only roots, and escapes. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
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

  // Pool VMs serve 9p roots with binds (here) and roots on disks with binds (below).
  it('bind mounts reach a warm-pool VM too (9p roots), and the network works there', async () => {
    const share = path.join(tmp, 'pool-share');
    fs.mkdirSync(share);
    fs.writeFileSync(path.join(share, 'f'), 'seen by the pool VM\n');
    const p = new TestDaemon(['--storage-driver', 'overlay', '--pool-size', '1']);
    await p.start();
    try {
      await p.importBusybox();
      // A cold boot under TCG on a loaded 2-core machine can take a while; the daemon's log says why if it never comes.
      await p.waitPool(1);
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

  // A root on disks with binds needs a 9p share as well as the disks: a pool of its own
  // shape, filled when a start first asks it for a VM (the daemon fills the disks-only one).
  it('serves a root on disks with binds and a named volume from the warm pool, filled on first need', async () => {
    const share = path.join(tmp, 'blk-pool-share');
    fs.mkdirSync(share);
    fs.writeFileSync(path.join(share, 'f'), 'host file\n');
    const srv = http.createServer((_req, res) => res.end('host says hi\n'));
    await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
    const port = (srv.address() as net.AddressInfo).port;
    const p = new TestDaemon(['--storage-driver', 'block', '--pool-size', '1']);
    await p.start();
    const mode = async (id: string) => (await p.run(['inspect', '-f', '{{.HyperBox.Start.mode}}', id])).stdout.trim();
    const cmdline = async (id: string) => fs.readFileSync(`/proc/${(await p.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim()}/cmdline`, 'utf8');
    const shareBinds = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${p.dataRoot}/`) && /\/pool-[^/ ]+\/share\/\d+ /.test(l));
    try {
      await p.importBusybox();
      // The first start with binds finds that pool empty (a clone) and makes it fill.
      const first = await p.run(['run', '--rm', '-v', 'pooled:/data', 'busybox', 'sh', '-c', 'echo from-the-clone > /data/v']);
      assert.equal(first.code, 0, first.stderr);
      await p.waitPool(2);
      assert.match((await p.run(['info'])).stdout, /^Warm Pool: 2 ready of 2 \(1 per shape, 2 shapes\)$/m);
      const script = [
        'cat /data/v /mnt/f /etc/hostfile; echo from-the-pool >> /data/v; echo back > /mnt/back',
        '(echo x > /ro/no) 2>/dev/null || echo ro-refused',
        `wget -qO- http://thehost:${port}/; exec sleep 1000`,
      ].join('; ');
      const binds = ['-v', 'pooled:/data', '-v', `${share}:/mnt`, '-v', `${share}:/ro:ro`, '-v', `${share}/f:/etc/hostfile:ro`];
      const run = await p.run(['run', '-d', '--add-host', 'thehost:host-gateway', ...binds, 'busybox', 'sh', '-c', script]);
      assert.equal(run.code, 0, run.stderr);
      const id = run.stdout.trim();
      assert.equal(await mode(id), 'pool');
      assert.match(await cmdline(id), /virtio-9p-device/);
      await until('output', async () => (await p.run(['logs', id])).stdout === 'from-the-clone\nhost file\nhost file\nro-refused\nhost says hi\n');
      assert.equal(fs.readFileSync(path.join(share, 'back'), 'utf8'), 'back\n');
      assert.ok(!fs.existsSync(path.join(share, 'no')), 'the read-only bind refused the write');
      const bound = shareBinds();
      assert.equal(bound.length, 4, `the four binds (a file among them), under the pool VM's share: ${bound.join('\n')}`);
      for (const l of bound) assert.match(l.split(' ')[5] ?? '', /(^|,)nosuid,nodev(,|$)/, l);
      // Without binds: the disks-only pool, still no 9p device (migration stays possible).
      const plain = (await p.run(['run', '-d', 'busybox', 'sleep', '1000'])).stdout.trim();
      assert.equal(await mode(plain), 'pool');
      assert.doesNotMatch(await cmdline(plain), /virtio-9p/);
      assert.equal((await p.run(['rm', '-f', id, plain])).code, 0);
      await until('the share binds gone', async () => shareBinds().length === 0, 20_000);
      assert.equal(fs.readFileSync(path.join(share, 'f'), 'utf8'), 'host file\n', 'the bind source survived rm');
      const again = await p.run(['run', '--rm', '-v', 'pooled:/data', 'busybox', 'cat', '/data/v']);
      assert.equal(again.stdout, 'from-the-clone\nfrom-the-pool\n', again.stderr);
    } finally {
      srv.close();
      await p.stop();
    }
  });
});
