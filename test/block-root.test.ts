/**
 * Container roots on block devices (issue 14, `hyperboxd --storage-driver
 * block`): the image's read-only filesystem and a writable disk per container,
 * assembled by the guest with overlayfs. On the root, as on Docker: FIFOs,
 * device nodes, unix sockets, hard links, chown and setuid bits (9p refuses
 * special files). Files persist across restarts; binds and volumes still work
 * (over 9p); a container without any has no 9p device, so QEMU can migrate it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { saveState } from '../src/vm/qemu/migration.js';
import { QmpClient } from '../src/vm/qemu/qmp.js';
import { busyboxTar, repo, TestDaemon } from './helpers/daemon.js';

const debianTar = path.join(repo, 'build/debian-rootfs.tar');

describe('roots on block devices', () => {
  let d: TestDaemon;
  before(async () => {
    d = new TestDaemon(['--storage-driver', 'block']);
    await d.start();
    for (const [tar, name] of [[busyboxTar, 'busybox'], [debianTar, 'debian:bookworm']] as const) {
      const r = await d.run(['import', '-c', 'CMD ["sh"]', tar, name], { timeoutMs: 180_000 });
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(async () => {
    for (const c of (await d?.run(['ps', '-aq']))?.stdout.split('\n').filter(Boolean) ?? []) await d.run(['rm', '-f', c]);
    await d?.stop();
  });

  const runDirOf = (id: string) => path.join(d.dataRoot, 'data', 'run', id.slice(0, 12));
  const qemuCmdline = async (id: string) => {
    const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  };

  it('gives the Debian image FIFOs, device nodes, unix sockets, hard links, chown and setuid on its root', async () => {
    const script = [
      'set -e',
      'mkfifo /run/fifo && test -p /run/fifo && echo fifo',
      'mknod /tmp/null c 1 3 && echo x > /tmp/null && echo mknod',
      // A unix-socket server and client on the root (PostgreSQL's /run/postgresql/.s.PGSQL.5432 case).
      `perl -MIO::Socket::UNIX -e '$s=IO::Socket::UNIX->new(Type=>SOCK_STREAM(),Local=>"/run/s.sock",Listen=>1) or die $!; if(fork){$c=$s->accept; print <$c>; wait} else {$k=IO::Socket::UNIX->new(Peer=>"/run/s.sock") or die $!; print $k "unix-socket\\n"; exit 0}'`,
      'echo data > /srv/a && ln /srv/a /srv/b && stat -c %h /srv/a',
      'chown 1000:1000 /srv/a && stat -c %u:%g /srv/b',
      'cp /bin/true /srv/suid && chmod 4755 /srv/suid && stat -c %A /srv/suid',
    ].join('\n');
    for (const args of [[], ['--no-clone']]) {
      const r = await d.run(['run', '--rm', ...args, 'debian:bookworm', 'bash', '-c', script], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.deepEqual(r.stdout.trim().split('\n'), ['fifo', 'mknod', 'unix-socket', '2', '1000:1000', '-rwsr-xr-x']);
    }
  });

  it('keeps the writable disk across restarts, has no 9p device without binds, and frees the disk on rm', async () => {
    const id = (await d.run(['run', '-d', 'busybox', 'sh', '-c', 'echo kept >> /state; exec sleep 1000'])).stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.doesNotMatch(await qemuCmdline(id), /virtio-9p/, 'no 9p device');
    assert.match(await qemuCmdline(id), /virtio-blk-device.*serial=hb-lower.*virtio-blk-device.*serial=hb-upper/);
    assert.equal((await d.run(['restart', '-t', '0', id])).code, 0);
    assert.equal((await d.run(['exec', id, 'cat', '/state'])).stdout, 'kept\nkept\n');
    const graph = JSON.parse((await d.run(['inspect', '-f', '{{json .GraphDriver}}', id])).stdout);
    assert.equal(graph.Name, 'block');
    const containerDir = path.join(d.dataRoot, 'data', 'containers', id);
    assert.ok(fs.readdirSync(containerDir).some((f) => /\.(ext4|img|raw)$/.test(f)), 'a disk file in the container directory');
    assert.equal((await d.run(['rm', '-f', id])).code, 0);
    assert.equal(fs.existsSync(containerDir), false);
  });

  it('binds volumes and host directories over 9p, and --read-only makes the root read-only', async () => {
    const host = fs.mkdtempSync('/tmp/hb-blk-bind-');
    fs.writeFileSync(path.join(host, 'hello'), 'from the host\n');
    try {
      const r = await d.run([
        'run', '--rm', '--read-only', '-v', `${host}:/mnt/host:ro`, '-v', 'blkvol:/data', 'busybox', 'sh', '-c',
        'cat /mnt/host/hello; echo v > /data/v && cat /data/v; touch /x 2>&1 | grep -o "Read-only file system"; touch /mnt/host/y 2>&1 | grep -o "Read-only file system"',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'from the host\nv\nRead-only file system\nRead-only file system\n');
    } finally {
      fs.rmSync(host, { recursive: true, force: true });
      await d.run(['volume', 'rm', 'blkvol']);
    }
  });

  it('lets QEMU migrate a running container on disks (a mounted 9p share would block it)', async () => {
    const id = (await d.run(['run', '-d', 'busybox', 'sleep', '1000'])).stdout.trim();
    const runDir = runDirOf(id);
    const qmp = await QmpClient.connect(path.join(runDir, 'qmp.sock'), 5000);
    try {
      await saveState(qmp, path.join(runDir, 'mig-test.sock'), path.join(runDir, 'mig-test.state'), 120_000);
      const st = (await qmp.execute('query-migrate')) as { status: string };
      assert.equal(st.status, 'completed');
      assert.ok(fs.statSync(path.join(runDir, 'mig-test.state')).size > 1024 * 1024, 'the VM state (RAM included) was written');
    } finally {
      qmp.close();
      await d.run(['rm', '-f', id]);
    }
  });

  it('answers cp, diff, export and commit with a clear error (not yet through the agent)', async () => {
    const id = (await d.run(['create', 'busybox', 'true'])).stdout.trim();
    for (const args of [['diff', id], ['export', id], ['commit', id], ['cp', `${id}:/etc/passwd`, '/tmp/hb-blk-cp-out']]) {
      const r = await d.run(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, /not supported yet for a container on block storage/, args.join(' '));
    }
    await d.run(['rm', id]);
  });
});
