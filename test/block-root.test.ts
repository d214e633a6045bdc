/**
 * Container roots on block devices (issue 14, `hyperboxd --storage-driver
 * block`): the image's read-only filesystem and a writable disk per container,
 * assembled by the guest with overlayfs. On the root, as on Docker: FIFOs,
 * device nodes, unix sockets, hard links, chown and setuid bits (9p refuses
 * special files). Files persist across restarts; binds and volumes still work
 * (over 9p); a container without any has no 9p device, so QEMU can migrate it.
 * `cp`, `export`, `diff` and `commit` read the root through the guest.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { saveState } from '../src/vm/qemu/migration.js';
import { QmpClient } from '../src/vm/qemu/qmp.js';
import { busyboxTar, repo, TestDaemon, until } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';
import { LAYER_SCRIPT, layerCases } from './helpers/layer-cases.js';

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
    // Each run's write, waited for: `run -d` and `restart` return once the process started, and
    // a restart before the first write (a busy machine) would leave one line.
    await until('the write of the first run', async () => (await d.run(['exec', id, 'cat', '/state'])).stdout === 'kept\n');
    assert.equal((await d.run(['restart', '-t', '0', id])).code, 0);
    await until('the write of the second run', async () => (await d.run(['exec', id, 'cat', '/state'])).stdout === 'kept\nkept\n');
    const graph = JSON.parse((await d.run(['inspect', '-f', '{{json .GraphDriver}}', id])).stdout);
    assert.equal(graph.Name, 'block');
    const containerDir = path.join(d.dataRoot, 'data', 'containers', id);
    assert.ok(fs.readdirSync(containerDir).some((f) => /\.(ext4|img|raw)$/.test(f)), 'a disk file in the container directory');
    assert.equal((await d.run(['rm', '-f', id])).code, 0);
    assert.equal(fs.existsSync(containerDir), false);
  });

  it('starts new containers on their own copy of the template\'s pre-mounted disk; a restart (disk kept) and --storage-opt size take the usual path', async () => {
    const bases = () => fs.readdirSync(d.templateDir).map((k) => path.join(d.templateDir, k, 'upper-base.img')).filter((f) => fs.existsSync(f));
    const ids: string[] = [];
    for (const who of ['first', 'second']) {
      const r = await d.run(['run', '-d', 'busybox', 'sh', '-c', `echo ${who} > /own; exec sleep 1000`]);
      assert.equal(r.code, 0, r.stderr);
      ids.push(r.stdout.trim());
    }
    // The template directory is shared by the suite's daemons: every pre-mounted base in it.
    const baseStats = () => bases().map((f) => [f, fs.statSync(f)] as const);
    const before = baseStats();
    assert.ok(before.length >= 1, 'a template with a pre-mounted upper');
    for (const [f, st] of before) assert.equal(st.mode & 0o777, 0o400, `${f} is read-only`);
    const disks = ids.map((id) => fs.statSync(path.join(d.dataRoot, 'data', 'containers', id, 'disk.ext4')));
    for (const [i, id] of ids.entries()) {
      assert.equal((await d.run(['inspect', '-f', '{{.HyperBox.Start.mode}}', id])).stdout.trim(), 'clone');
      assert.equal((await d.run(['exec', id, 'cat', '/own'])).stdout, `${['first', 'second'][i]}\n`);
      assert.equal(disks[i]!.mode & 0o777, 0o600);
      assert.equal(disks[i]!.uid, 0);
      for (const [, st] of before) assert.notEqual(disks[i]!.ino, st.ino);
      // QEMU has the container's own disk open, and not the template's base.
      const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
      const open = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      assert.ok(open.includes(path.join(d.dataRoot, 'data', 'containers', id, 'disk.ext4')), open.join('\n'));
      assert.ok(!open.some((f) => f.includes('upper-base')), open.join('\n'));
    }
    assert.notEqual(disks[0]!.ino, disks[1]!.ino, 'each container has its own disk file');
    // Stopped and started again: the disk exists, so no pre-mounted upper; each keeps its own data.
    for (const [i, id] of ids.entries()) {
      assert.equal((await d.run(['stop', '-t', '0', id])).code, 0);
      assert.equal((await d.run(['start', id])).code, 0);
      assert.equal((await d.run(['exec', id, 'sh', '-c', 'cat /own; ls /'])).stdout.split('\n')[0], ['first', 'second'][i]);
    }
    const unchanged = (st: fs.Stats) => [st.mtimeMs, st.ctimeMs, st.size, st.blocks];
    for (const [f, st] of before) assert.deepEqual(unchanged(fs.statSync(f)), unchanged(st), `${f} was never written`);
    // Another size than the default's: a disk of that size (df sees the upper's filesystem).
    const small = await d.run(['run', '--rm', '--storage-opt', 'size=64M', 'busybox', 'sh', '-c', "df -k / | awk 'NR==2 {print $2}'"]);
    assert.equal(small.code, 0, small.stderr);
    assert.ok(Number(small.stdout) > 40_000 && Number(small.stdout) < 66_000, small.stdout);
    for (const id of ids) await d.run(['rm', '-f', id]);
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

  it('copies files out of and into a running container and exports it, through the guest', async () => {
    const id = (await d.run(['run', '-d', 'busybox', 'sh', '-c',
      'echo inside > /tmp/made; ln -s /etc/passwd /tmp/pw; mkdir -p /tmp/d/e; echo deep > /tmp/d/e/f; touch /tmp/ready; exec sleep 1000'])).stdout.trim();
    const work = fs.mkdtempSync('/tmp/hb-blk-cp-');
    try {
      await until('the container made its files', async () => (await d.run(['exec', id, 'ls', '/tmp/ready'])).code === 0);
      const hostname = (await d.run(['exec', id, 'cat', '/etc/hostname'])).stdout;
      assert.equal((await d.run(['cp', `${id}:/etc/hostname`, work])).code, 0);
      assert.equal(fs.readFileSync(path.join(work, 'hostname'), 'utf8'), hostname);
      const r = await d.run(['cp', `${id}:/tmp/d`, path.join(work, 'copied')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(work, 'copied/e/f'), 'utf8'), 'deep\n');
      const contents = await docker(d, ['cp', `${id}:/tmp/d/.`, path.join(work, 'contents')]);
      assert.equal(contents.code, 0, contents.stderr);
      assert.equal(fs.readFileSync(path.join(work, 'contents/e/f'), 'utf8'), 'deep\n', '"DIR/." copies the contents');
      // docker's CLI: `cp c:/etc/hostname -` is a tar with the file at its top
      const out = await docker(d, ['cp', `${id}:/etc/hostname`, '-']);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^hostname\0/);
      const link = await docker(d, ['cp', `${id}:/tmp/pw`, path.join(work, 'pw')]);
      assert.equal(link.code, 0, link.stderr);
      assert.equal(fs.readlinkSync(path.join(work, 'pw')), '/etc/passwd', 'a symlink is copied as a link');
      const missing = await d.run(['cp', `${id}:/nope`, work]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /No such file|Could not find/);

      // cp in: a file, renamed, and a hostile archive that stays out
      fs.writeFileSync(path.join(work, 'up'), 'from host\n');
      for (const dest of [`${id}:/root/`, `${id}:/root/renamed`]) {
        const up = await docker(d, ['cp', path.join(work, 'up'), dest]);
        assert.equal(up.code, 0, up.stderr);
      }
      assert.equal((await d.run(['exec', id, 'sh', '-c', 'cat /root/up /root/renamed; stat -c %u /root/up'])).stdout, 'from host\nfrom host\n0\n');
      for (const archive of await hostileTars()) {
        const bad = await d.run(['cp', '-', `${id}:/tmp`], { input: archive.toString('latin1') });
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /escapes the root filesystem/);
      }
      assert.notEqual((await d.run(['exec', id, 'ls', '/hb-canary'])).code, 0, 'nothing written outside /tmp');

      const file = path.join(work, 'export.tar');
      const ex = await d.run(['export', '-o', file, id]);
      assert.equal(ex.code, 0, ex.stderr);
      const list = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
      assert.match(list, / etc\/passwd\n/);
      assert.match(list, / tmp\/made\n/);
      assert.match(list, / tmp\/pw -> \/etc\/passwd\n/);
      assert.doesNotMatch(list, / \.\//, 'names as the 9p path gives them');
      assert.doesNotMatch(list, / proc\/./, "the guest's mounts are left out, as on Docker");
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
      await d.run(['rm', '-f', id]);
    }
  });

  it('copies files out of and into a stopped container and exports it through a helper VM, then starts it as before', async () => {
    const r0 = await d.run(['run', '--name', 'blk-stopped', 'busybox', 'sh', '-c', 'echo one >> /state; mkdir -p /srv/d && echo deep > /srv/d/f']);
    assert.equal(r0.code, 0, r0.stderr);
    const work = fs.mkdtempSync('/tmp/hb-blk-cp-');
    try {
      const r = await d.run(['cp', 'blk-stopped:/state', work]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(work, 'state'), 'utf8'), 'one\n');
      const out = await docker(d, ['cp', 'blk-stopped:/srv/d', '-']);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^d\/\0/);
      const file = path.join(work, 'export.tar');
      const ex = await d.run(['export', '-o', file, 'blk-stopped']);
      assert.equal(ex.code, 0, ex.stderr);
      const list = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).split('\n');
      assert.ok(list.includes('etc/passwd') && list.includes('state') && list.includes('srv/d/f'), list.join(' '));
      fs.writeFileSync(path.join(work, 'up'), 'copied in\n');
      const up = await docker(d, ['cp', path.join(work, 'up'), 'blk-stopped:/srv/']);
      assert.equal(up.code, 0, up.stderr);
      // The helper is gone and the disk is whole: the container starts and sees its files.
      const again = await docker(d, ['start', '-a', 'blk-stopped']);
      assert.equal(again.code, 0, again.stderr);
      assert.match((await docker(d, ['cp', 'blk-stopped:/state', '-'])).stdout, /one\none\n/);
      assert.match((await docker(d, ['cp', 'blk-stopped:/srv/up', '-'])).stdout, /copied in\n/);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
      await d.run(['rm', '-f', 'blk-stopped']);
    }
  });

  it('refuses cp into a --read-only root', async () => {
    const id = (await d.run(['create', '--read-only', 'busybox', 'true'])).stdout.trim();
    fs.writeFileSync('/tmp/hb-blk-cp-in', 'x\n');
    const ro = await d.run(['cp', '/tmp/hb-blk-cp-in', `${id}:/tmp/`]);
    assert.notEqual(ro.code, 0);
    assert.match(ro.stderr, /read-only/);
    fs.rmSync('/tmp/hb-blk-cp-in', { force: true });
    await d.run(['rm', id]);
  });

  describe('diff and commit of a running container, through its agent', () => {
    before(async () => {
      const r = await d.run(['run', '-d', '--name', 'box', 'busybox', 'sh', '-c', LAYER_SCRIPT]);
      assert.equal(r.code, 0, r.stderr);
      await until('the container set up its files', async () => (await d.run(['exec', 'box', 'cat', '/home/new'])).stdout === 'fresh\n');
    });
    layerCases(() => d, 'box');
  });

  it('diffs and commits a stopped container through a helper VM: an opaque directory hides the image\'s files', async () => {
    const r0 = await d.run(['run', '--name', 'blk-layer', 'debian:bookworm', 'bash', '-c',
      'set -e; rm -rf /usr/share/doc; mkdir /usr/share/doc; echo n > /usr/share/doc/new; rm -f /etc/debian_version /etc/issue /etc/issue.net; test -p /srv/fifo || mkfifo /srv/fifo'], { timeoutMs: 120_000 });
    assert.equal(r0.code, 0, r0.stderr);
    try {
      const diff = await d.run(['diff', 'blk-layer']);
      assert.equal(diff.code, 0, diff.stderr);
      // overlay's later whiteouts are hard links to its first: each is a deletion too
      for (const line of ['C /usr/share/doc', 'A /usr/share/doc/new', 'D /etc/debian_version', 'D /etc/issue', 'D /etc/issue.net', 'A /srv/fifo']) assert.match(diff.stdout, new RegExp(`^${line}$`, 'm'));
      assert.doesNotMatch(diff.stdout, /usr\/share\/doc\/[^n]/, 'nothing of the image under the replaced directory');
      const c = await d.run(['commit', 'blk-layer', 'blk-snap:1']);
      assert.equal(c.code, 0, c.stderr);
      const r = await d.run(['run', '--rm', 'blk-snap:1', 'bash', '-c', 'ls /usr/share/doc; ls /etc/debian_version /etc/issue /etc/issue.net 2>/dev/null || echo gone; test -p /srv/fifo && echo fifo'], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'new\ngone\nfifo\n');
      const again = await docker(d, ['start', '-a', 'blk-layer']);
      assert.equal(again.code, 0, `the container starts after its helper VMs: ${again.stderr}`);
    } finally {
      await d.run(['rm', '-f', 'blk-layer']);
    }
  });

  it('builds an image: RUN layers come through the guest (a deletion, a FIFO), COPY from the context, a cached rebuild', async () => {
    const ctxDir = fs.mkdtempSync('/tmp/hb-blk-build-');
    try {
      fs.writeFileSync(path.join(ctxDir, 'Dockerfile'), 'FROM busybox\nRUN echo one > /one && rm /bin/true && mkfifo /fifo\nCOPY f /f\nRUN cat /one /f > /both\nCMD ["cat", "/both"]\n');
      fs.writeFileSync(path.join(ctxDir, 'f'), 'from the context\n');
      const b = await d.run(['build', '-t', 'blk-built:1', ctxDir], { timeoutMs: 180_000 });
      assert.equal(b.code, 0, b.stderr);
      const r = await d.run(['run', '--rm', 'blk-built:1', 'sh', '-c', 'cat /both; ls /bin/true 2>/dev/null || echo deleted; test -p /fifo && echo fifo']);
      assert.equal(r.stdout, 'one\nfrom the context\ndeleted\nfifo\n', r.stderr);
      const again = await docker(d, ['build', '-t', 'blk-built:1', ctxDir]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal((again.stdout.match(/Using cache/g) ?? []).length, 4, again.stdout);
    } finally {
      fs.rmSync(ctxDir, { recursive: true, force: true });
    }
  });
});

describe('roots on block devices from the warm pool', () => {
  it('starts a container on a pool VM that gets its disks when taken, and keeps them across a restart', async () => {
    const p = new TestDaemon(['--storage-driver', 'block', '--pool-size', '1']);
    await p.start();
    try {
      await p.importBusybox();
      await p.waitPool(1, 120_000);
      const id = (await p.run(['run', '-d', 'busybox', 'sh', '-c', 'echo pooled >> /state; exec sleep 1000'])).stdout.trim();
      assert.match(id, /^[0-9a-f]{64}$/);
      assert.equal((await p.run(['inspect', '-f', '{{.HyperBox.Start.mode}}', id])).stdout.trim(), 'pool');
      await until('its write', async () => (await p.run(['exec', id, 'cat', '/state'])).stdout === 'pooled\n');
      assert.equal((await p.run(['exec', id, 'sh', '-c', 'grep " / " /proc/mounts | cut -d" " -f3'])).stdout, 'overlay\n');
      if (process.getuid?.() === 0) {
        // The image's filesystem (every container of the image shares it) is on a read-only mount in the jail.
        const pid = Number((await p.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
        const mounts = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').map((l) => l.split(' '));
        const ro = mounts.find((f) => /\/pool-[^/]+\/ro$/.test(f[4] ?? ''));
        assert.ok(ro, 'the pool VM has a read-only directory in its jail');
        assert.match(ro[5] ?? '', /^ro(,|$)/);
      }
      await p.waitPool(1, 120_000);
      // A restart keeps its disk: not for the pool of new containers (a pre-mounted copy of a blank
      // disk) but for the one of the placeholder template, which the first such start fills.
      const mode = () => p.run(['inspect', '-f', '{{.HyperBox.Start.mode}}', id]).then((r) => r.stdout.trim());
      assert.equal((await p.run(['restart', '-t', '0', id])).code, 0);
      assert.equal(await mode(), 'clone');
      await p.waitPool(2, 120_000);
      assert.equal((await p.run(['restart', '-t', '0', id])).code, 0);
      assert.equal(await mode(), 'pool', 'the second restart took a pool VM');
      assert.equal((await p.run(['exec', id, 'cat', '/state'])).stdout, 'pooled\npooled\npooled\n', 'the disk it got is the container\'s own');
      assert.equal((await p.run(['rm', '-f', id])).code, 0);
    } finally {
      await p.stop();
    }
  });
});

/** Tars whose entries try to leave the extraction directory: by "..", and through a symlink they make. */
async function hostileTars(): Promise<Buffer[]> {
  const make = async (add: (p: tar.Pack) => void) => {
    const pack = tar.pack();
    add(pack);
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  };
  return [
    await make((p) => p.entry({ name: '../hb-canary' }, 'escaped')),
    await make((p) => (p.entry({ name: 'esc', type: 'symlink', linkname: '/' }), p.entry({ name: 'esc/hb-canary' }, 'escaped'))),
  ];
}
