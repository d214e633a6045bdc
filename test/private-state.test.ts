/**
 * Private state (issue 13): a local user who is not root (`nobody`, through
 * setpriv) cannot read the database holding a container's environment, the
 * container roots, run directories or templates, cannot use the API socket,
 * and cannot hijack instant clones by creating the template RAM directory
 * first (the daemon refuses it and cold-boots, saying why).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, TestDaemon } from './helpers/daemon.js';

const asRoot = process.getuid?.() === 0;

/** Runs a command as nobody; its exit code and output. */
function asNobody(cmd: string[]): { code: number; out: string } {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...cmd], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe('private state', { skip: asRoot ? false : 'needs root (setpriv to nobody)' }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  it('keeps the database, roots, run and template directories and the socket from other users', async () => {
    const r = await d.run(['run', '-d', '-e', 'SECRET=hunter2-private', 'busybox', 'sleep', '1000']);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const data = path.join(d.dataRoot, 'data');
    // Even a data root made world-readable before the daemon started is private after it.
    assert.equal(fs.statSync(data).mode & 0o777, 0o700);
    const db = path.join(data, 'hyperbox.db');
    assert.equal(fs.statSync(db).mode & 0o777, 0o600);
    assert.match(fs.readFileSync(db).toString('latin1') + (fs.existsSync(`${db}-wal`) ? fs.readFileSync(`${db}-wal`).toString('latin1') : ''), /hunter2-private/, 'the secret is in the database (so the check below means something)');
    // A block root (the default): the container's writable disk and the image's erofs.
    const disk = path.join(data, 'containers', id, 'disk.ext4');
    const imageFs = fs.readdirSync(path.join(data, 'rootfs'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.erofs'));
    assert.ok(fs.existsSync(disk) && imageFs.length > 0, 'the disks exist (so the checks below mean something)');
    for (const target of [db, path.join(data, 'containers', id), path.join(data, 'run'), disk, ...imageFs.map((f) => path.join(data, 'rootfs', f))]) {
      const read = asNobody(['cat', target]);
      const list = asNobody(['ls', target]);
      assert.notEqual(read.code, 0, `nobody read ${target}: ${read.out}`);
      assert.notEqual(list.code, 0, `nobody listed ${target}: ${list.out}`);
    }
    const grep = asNobody(['grep', '-rl', 'hunter2-private', data]);
    assert.doesNotMatch(grep.out, /hyperbox\.db/);
    const sock = fs.statSync(d.socket);
    assert.equal(sock.mode & 0o777, 0o660);
    const ping = asNobody(['curl', '-sS', '--unix-socket', d.socket, 'http://x/_ping']);
    assert.notEqual(ping.out.trim(), 'OK', 'nobody used the API socket');
    const memDir = `/dev/shm/hyperbox-${createHash('sha256').update(d.templateDir).digest('hex').slice(0, 12)}`;
    assert.equal(fs.statSync(memDir).mode & 0o777, 0o700, `${memDir} is private`);
    assert.equal(fs.statSync(d.templateDir).mode & 0o777, 0o700);
    assert.notEqual(asNobody(['ls', memDir]).code, 0);
    assert.equal((await d.run(['rm', '-f', id])).code, 0);
  });

  it('refuses a template RAM directory another user made first, and cold-boots instead', async () => {
    const own = new TestDaemon([], {}, { ownTemplates: true });
    const templates = path.join(own.dataRoot, 'data', 'templates');
    const memDir = `/dev/shm/hyperbox-${createHash('sha256').update(templates).digest('hex').slice(0, 12)}`;
    fs.rmSync(memDir, { recursive: true, force: true });
    const made = asNobody(['mkdir', '-m', '0777', memDir]);
    assert.equal(made.code, 0, made.out);
    try {
      await own.start();
      await own.importBusybox();
      const r = await own.run(['run', '-d', 'busybox', 'sleep', '1000']);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse((await own.run(['inspect', '-f', '{{json .HyperBox.Start}}', r.stdout.trim()])).stdout) as { mode: string; fallbackReason?: string };
      assert.equal(info.mode, 'cold');
      assert.match(info.fallbackReason ?? '', /not private/);
      assert.deepEqual(fs.readdirSync(memDir), [], 'no guest memory in the attacker\'s directory');
    } finally {
      await own.stop();
      fs.rmSync(memDir, { recursive: true, force: true });
    }
  });
});
