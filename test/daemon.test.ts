/** The daemon itself: accelerator choice, flags, state dir errors, socket handling. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultBridgeName } from '../src/engine/net/networks.js';
import { removeDefaultBridge, repo, TestDaemon } from './helpers/daemon.js';

describe('hyperboxd', () => {
  const daemons: TestDaemon[] = [];
  after(async () => {
    for (const d of daemons) await d.stop();
  });

  it('picks an accelerator by booting a guest and explains it in info', async () => {
    const d = new TestDaemon();
    daemons.push(d);
    await d.start();
    const info = await d.run(['info']);
    assert.equal(info.code, 0, info.stderr);
    const accel = /^Accelerator: (\w+)$/m.exec(info.stdout)?.[1];
    assert.ok(accel === 'kvm' || accel === 'tcg', info.stdout);
    assert.match(info.stdout, /^Accelerator Reason: .+/m);
    if (accel === 'tcg' && fs.existsSync('/dev/kvm')) {
      // KVM present but unusable (as on paravirtual-KVM CI hosts): the reason says what happened.
      assert.match(info.stdout, /did not boot|not usable/);
    }
    const version = await d.run(['version']);
    assert.match(version.stdout, /Accelerator: (kvm|tcg)/);
  });

  it('honours --accel and HYPERBOX_ACCEL overrides', async () => {
    const d = new TestDaemon(['--accel', 'tcg']);
    daemons.push(d);
    await d.start();
    assert.match((await d.run(['info'])).stdout, /^Accelerator: tcg$/m);
    assert.match((await d.run(['info'])).stdout, /chosen by configuration/);
    const bad = spawnSync(path.join(repo, 'bin/hyperboxd'), ['--accel', 'warp', '--data-root', d.dataRoot, '-H', `unix://${d.dataRoot}/x.sock`], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /invalid accelerator "warp"/);
  });

  it('fails with one clear line when the state dir is not writable', () => {
    const ro = fs.mkdtempSync(path.join(os.tmpdir(), 'hbro-'));
    spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      const r = spawnSync(path.join(repo, 'bin/hyperboxd'), ['--data-root', path.join(ro, 'state'), '-H', `unix://${ro}.sock`], { encoding: 'utf8', timeout: 20000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^hyperboxd: data root .*state is not writable: EROFS\n$/);
    } finally {
      spawnSync('umount', [ro]);
      fs.rmSync(ro, { recursive: true, force: true });
    }
  });

  it('refuses to take over the socket of a running daemon', async () => {
    const d = new TestDaemon();
    daemons.push(d);
    await d.start();
    const other = path.join(d.dataRoot, 'other');
    const r = spawnSync(path.join(repo, 'bin/hyperboxd'), ['-H', d.host, '--data-root', other], { encoding: 'utf8', timeout: 30000 });
    const bridgeLeft = fs.existsSync(`/sys/class/net/${defaultBridgeName(other)}`);
    removeDefaultBridge(other);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already listening/);
    assert.ok(!bridgeLeft, 'it found the socket taken before it set up a network');
    assert.equal((await d.run(['ps'])).code, 0);
  });

  it('refuses a second daemon on the data root of a running one, which keeps its containers', async () => {
    const d = new TestDaemon();
    daemons.push(d);
    await d.start();
    await d.importBusybox();
    const run = await d.run(['run', '-d', 'busybox', 'sleep', '600'], { timeoutMs: 120_000 });
    assert.equal(run.code, 0, run.stderr);
    const r = spawnSync(path.join(repo, 'bin/hyperboxd'), ['-H', `unix://${d.dataRoot}/second.sock`, '--data-root', path.join(d.dataRoot, 'data')], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`another hyperboxd \\(pid ${d.pid}\\) is running on data root`));
    assert.equal((await d.run(['exec', run.stdout.trim(), 'echo', 'still here'])).stdout, 'still here\n');
    // A killed daemon's pid file names no live daemon: the next one starts.
    await d.kill();
    await d.start();
    assert.equal((await d.run(['ps', '-q'])).code, 0);
  });

  it('tells the user when no daemon answers on -H', async () => {
    const r = spawnSync(path.join(repo, 'bin/hyperbox'), ['-H', 'unix:///nonexistent/hb.sock', 'ps'], { encoding: 'utf8' });
    assert.equal(r.status, 125);
    assert.match(r.stderr, /Cannot connect to the hyperbox daemon at unix:\/\/\/nonexistent\/hb.sock/);
  });
});
