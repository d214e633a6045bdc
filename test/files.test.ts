/**
 * cp (both ways, both CLIs), export, diff and commit (helpers/layer-cases.ts): container filesystems handled on the host, safely.
 * About 9p roots (`--storage-driver overlay`: the host reads and writes their overlay);
 * block-root.test.ts runs the same cases on roots on disks, the default, through the guest.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';
import { LAYER_SCRIPT, layerCases } from './helpers/layer-cases.js';

let d: TestDaemon;
let work: string;

before(async () => {
  d = await startDaemonWithBusybox(['--storage-driver', 'overlay']);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-files-'));
  const r = await d.run(['run', '-d', '--name', 'box', 'busybox', 'sh', '-c', LAYER_SCRIPT]);
  assert.equal(r.code, 0, r.stderr);
  // The setup script's last change, seen from inside: all of them are made.
  await until('the container set up its files', async () => (await d.run(['exec', 'box', 'cat', '/home/new'])).stdout === 'fresh\n');
});
after(async () => {
  await d?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('container files', () => {
  it('cp copies files and directories out and in (hyperbox CLI)', async () => {
    assert.equal((await d.run(['cp', 'box:/tmp/made', work])).code, 0);
    assert.equal(fs.readFileSync(path.join(work, 'made'), 'utf8'), 'inside\n');
    assert.equal((await d.run(['cp', 'box:/tmp/d', path.join(work, 'copied')])).code, 0);
    assert.equal(fs.readFileSync(path.join(work, 'copied/e/f'), 'utf8'), 'deep\n');
    fs.writeFileSync(path.join(work, 'up'), 'from host\n');
    assert.equal((await d.run(['cp', path.join(work, 'up'), 'box:/root/'])).code, 0);
    assert.equal((await d.run(['cp', path.join(work, 'up'), 'box:/root/renamed'])).code, 0);
    const r = await d.run(['exec', 'box', 'sh', '-c', 'cat /root/up /root/renamed; stat -c %u /root/up']);
    assert.equal(r.stdout, 'from host\nfrom host\n0\n');
  });

  it('cp of a symlink to /etc/passwd copies the link, and -L follows it inside the container only', async () => {
    const link = await docker(d, ['cp', 'box:/tmp/pw', path.join(work, 'pw')]);
    assert.equal(link.code, 0, link.stderr);
    assert.equal(fs.readlinkSync(path.join(work, 'pw')), '/etc/passwd');
    const followed = await docker(d, ['cp', '-L', 'box:/tmp/pw', path.join(work, 'pw-followed')]);
    assert.equal(followed.code, 0, followed.stderr);
    const content = fs.readFileSync(path.join(work, 'pw-followed'), 'utf8');
    const etc = repoBusyboxEtc();
    try {
      assert.equal(content, fs.readFileSync(path.join(etc, 'passwd'), 'utf8'), "the container's passwd, not the host's");
    } finally {
      fs.rmSync(path.dirname(etc), { recursive: true, force: true });
    }
    assert.notEqual(content, fs.readFileSync('/etc/passwd', 'utf8'));
  });

  it('docker cp in and out, and a hostile archive cannot escape the container root', async () => {
    fs.writeFileSync(path.join(work, 'dk'), 'via docker\n');
    assert.equal((await docker(d, ['cp', path.join(work, 'dk'), 'box:/tmp/'])).code, 0);
    const out = await docker(d, ['cp', 'box:/tmp/dk', '-']);
    assert.match(out.stdout, /via docker/);

    const canary = path.join(os.tmpdir(), `hbt-canary-${process.pid}`);
    const pack = tar.pack();
    pack.entry({ name: `../../../../../../../..${canary}` }, 'escaped');
    pack.entry({ name: 'esc', type: 'symlink', linkname: '/' });
    pack.entry({ name: `esc${canary}` }, 'escaped');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
    const bad = await d.run(['cp', '-', 'box:/tmp'], { input: Buffer.concat(chunks).toString('latin1') });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /escapes the root filesystem/);
    assert.equal(fs.existsSync(canary), false, 'nothing written outside the container');
  });

  layerCases(() => d, 'box');

  it('export has the container filesystem', async () => {
    const file = path.join(work, 'export.tar');
    assert.equal((await d.run(['export', '-o', file, 'box'])).code, 0);
    const list = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
    assert.match(list, / tmp\/made\n/);
    assert.match(list, / bin\/busybox\n/);
    assert.match(list, / tmp\/pw -> \/etc\/passwd\n/);
    assert.doesNotMatch(list, / bin\/vi /);
  });
});

/** The busybox image's /etc as built by scripts/make-busybox-rootfs.sh. */
function repoBusyboxEtc(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-bbetc-'));
  execFileSync('tar', ['-xf', path.join(path.dirname(new URL(import.meta.url).pathname), '../../build/busybox-rootfs.tar'), '-C', dir, './etc/passwd']);
  return path.join(dir, 'etc');
}
