/** Lifecycle: restart policies (with back-off, across daemon restarts), pause, rename, prune. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { holds, startDaemonWithBusybox, TestDaemon, until } from './helpers/daemon.js';

let d: TestDaemon;
const inspect = async (name: string, fmt: string) => (await d.run(['inspect', '-f', fmt, name])).stdout.trim();

before(async () => {
  d = await startDaemonWithBusybox();
});
after(async () => d?.stop());

describe('restart policies', () => {
  it('on-failure:3 restarts a failing container three times, then leaves it exited', async () => {
    assert.equal((await d.run(['run', '-d', '--name', 'flaky', '--restart', 'on-failure:3', 'busybox', 'sh', '-c', 'echo try; exit 2'])).code, 0);
    // The daemon decides on a restart when the container exits, and says so at once
    // (status "restarting"): "exited" after the third restart is final.
    await until('three restarts', async () => (await inspect('flaky', '{{.RestartCount}} {{.State.Status}}')) === '3 exited', 60_000);
    assert.equal(await inspect('flaky', '{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}'), '3 exited 2');
    assert.equal((await d.run(['logs', 'flaky'])).stdout, 'try\n'.repeat(4));
  });

  it('rejects bad policies and --restart with --rm', async () => {
    const bad = await d.run(['run', '--restart', 'sometimes', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /invalid restart policy format: sometimes/);
    const both = await d.run(['run', '--rm', '--restart', 'always', 'busybox', 'true']);
    assert.equal(both.code, 125);
    assert.match(both.stderr, /cannot specify both --restart and --rm/);
  });

  it('always restarts an exiting container; stop keeps it down; it comes back with the daemon', async () => {
    assert.equal((await d.run(['run', '-d', '--name', 'forever', '--restart', 'always', 'busybox', 'sh', '-c', 'sleep 0.5; exit 0'])).code, 0);
    await until('restarted twice', async () => Number(await inspect('forever', '{{.RestartCount}}')) >= 2, 60_000);
    assert.equal((await d.run(['run', '-d', '--name', 'steady', '--restart', 'unless-stopped', 'busybox', 'sleep', '1000'])).code, 0);
    assert.equal((await d.run(['run', '-d', '--name', 'stopped', '--restart', 'unless-stopped', 'busybox', 'sleep', '1000'])).code, 0);
    assert.equal((await d.run(['stop', '-t', '0', 'forever'])).code, 0);
    assert.equal((await d.run(['stop', '-t', '0', 'stopped'])).code, 0);
    // A restart is decided when the container exits, and shown at once (status
    // "restarting", never "exited"): "exited" means the stop kept it down.
    await until('forever to stay down after stop', async () => (await inspect('forever', '{{.State.Status}} {{.State.Running}}')) === 'exited false', 10_000);

    await d.restart();
    await until('always and unless-stopped are back', async () => (await inspect('forever', '{{.State.Running}}')) === 'true' && (await inspect('steady', '{{.State.Running}}')) === 'true', 60_000);
    assert.equal(await inspect('stopped', '{{.State.Running}}'), 'false', 'unless-stopped stays down after a manual stop');
    for (const n of ['forever', 'steady', 'stopped']) await d.run(['rm', '-f', n]);
  });
});

describe('container housekeeping', () => {
  it('pause freezes the VM and unpause resumes it; rename; container prune', async () => {
    assert.equal((await d.run(['run', '-d', '--name', 'ticker', 'busybox', 'sh', '-c', 'while true; do date +%s; sleep 0.2; done'])).code, 0);
    await until('output', async () => (await d.run(['logs', 'ticker'])).stdout.length > 0);
    assert.equal((await d.run(['pause', 'ticker'])).code, 0);
    assert.equal(await inspect('ticker', '{{.State.Status}} {{.State.Paused}}'), 'paused true');
    const frozen = (await d.run(['logs', 'ticker'])).stdout.split('\n').length;
    // The guest prints every 0.2 s: 1 s without a line is five missed.
    await holds(async () => (await d.run(['logs', 'ticker'])).stdout.split('\n').length === frozen, { what: 'no output while paused', forMs: 1000 });
    assert.equal((await d.run(['unpause', 'ticker'])).code, 0);
    await until('output resumes', async () => (await d.run(['logs', 'ticker'])).stdout.split('\n').length > frozen);
    assert.equal((await d.run(['rename', 'ticker', 'tocker'])).code, 0);
    const top = await d.run(['top', 'tocker']);
    assert.match(top.stdout, /while true; do date/);
    const stats = await d.run(['stats', '--no-stream', '--format', '{{.Name}} {{.PIDs}}', 'tocker']);
    assert.match(stats.stdout, /^tocker [1-9]/);
    assert.equal(await inspect('tocker', '{{.Name}}'), '/tocker');
    assert.equal((await d.run(['rm', '-f', 'tocker'])).code, 0);

    assert.equal((await d.run(['create', '--name', 'idle', 'busybox', 'true'])).code, 0);
    const pruned = await d.run(['container', 'prune', '-f']);
    assert.match(pruned.stdout, /Deleted Containers:\n[0-9a-f]{64}/);
    assert.equal((await d.run(['ps', '-aq'])).stdout.trim(), '');
  });
});


describe('logs', () => {
  it('rotates with --log-opt max-size/max-file so logs stay bounded', async () => {
    const r = await d.run(['run', '--name', 'chatty', '--log-opt', 'max-size=2k', '--log-opt', 'max-file=2', 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo line $i; done']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^line 1\n/, 'the attached client still sees everything');
    const id = (await d.run(['inspect', '-f', '{{.Id}}', 'chatty'])).stdout.trim();
    const dir = path.join(d.dataRoot, 'data', 'containers', id);
    const files = fs.readdirSync(dir).filter((f) => f.startsWith('container.log'));
    assert.deepEqual(files.sort(), ['container.log', 'container.log.1']);
    for (const f of files) assert.ok(fs.statSync(path.join(dir, f)).size <= 2200, `${f} is bounded`);
    const logs = (await d.run(['logs', 'chatty'])).stdout;
    assert.match(logs, /line 400\n$/);
    assert.doesNotMatch(logs, /^line 1\n/);
    const bad = await d.run(['run', '--log-opt', 'max-size=lots', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /invalid value for max-size: lots/);
    await d.run(['rm', 'chatty']);
  });
});

describe('resources', () => {
  it('--memory is enforced inside the guest and an OOM kill is reported as Docker does', async () => {
    const r = await d.run(['run', '--name', 'hog', '-m', '64m', 'busybox', 'sh', '-c', 'x=$(head -c 256000000 /dev/zero | tr "\\0" a); echo survived'], { timeoutMs: 120_000 });
    assert.equal(r.code, 137, r.stderr);
    assert.doesNotMatch(r.stdout, /survived/);
    assert.equal(await inspect('hog', '{{.State.OOMKilled}} {{.State.ExitCode}} {{.HostConfig.Memory}}'), `true 137 ${64 * 1024 * 1024}`);
    await d.run(['rm', 'hog']);
    const fits = await d.run(['run', '--rm', '-m', '64m', 'busybox', 'sh', '-c', 'x=$(head -c 8000000 /dev/zero | tr "\\0" a); echo fits']);
    assert.equal(fits.stdout, 'fits\n');
  });
});

describe('disk limits', () => {
  it('--storage-opt size sizes the writable disk of a block root: ENOSPC inside at that size, the daemon keeps going', async () => {
    const r = await d.run(['run', '--name', 'filler', '--storage-opt', 'size=24m', 'busybox', 'sh', '-c', "df -k / | tail -n 1; dd if=/dev/zero of=/big bs=1M count=64; echo rc=$?"]);
    assert.equal(await inspect('filler', '{{.GraphDriver.Name}}'), 'block', 'block is the default storage driver');
    assert.match(r.stderr + r.stdout, /No space left on device/);
    assert.match(r.stdout, /rc=1/);
    // The guest's root reports its writable disk's size (overlay's statfs is the upper's).
    const totalKiB = Number(r.stdout.split('\n')[0]!.trim().split(/\s+/)[1]);
    assert.ok(totalKiB > 16 * 1024 && totalKiB <= 24 * 1024, `df says ${totalKiB} KiB for a 24 MiB disk`);
    assert.equal((await d.run(['run', '--rm', 'busybox', 'echo', 'still fine'])).stdout, 'still fine\n');
    assert.equal((await d.run(['rm', 'filler'])).code, 0);
  });

  it('--storage-opt size bounds a 9p root\'s writable layer: ENOSPC inside, a warning in the daemon log', async () => {
    const o = await startDaemonWithBusybox(['--storage-driver', 'overlay']);
    try {
      const r = await o.run(['run', '--name', 'filler', '--storage-opt', 'size=24m', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/big bs=1M count=64; echo rc=$?']);
      assert.equal((await o.run(['inspect', '-f', '{{.GraphDriver.Name}}', 'filler'])).stdout.trim(), 'overlay');
      assert.match(r.stderr + r.stdout, /No space left on device/);
      assert.match(r.stdout, /rc=1/);
      await until('daemon log warning', () => o.log.includes('writable layer is full'));
      assert.equal((await o.run(['rm', 'filler'])).code, 0);
    } finally {
      await o.stop();
    }
  });

  it('a full host filesystem pauses a block-root container (no lost write), also across a daemon restart; unpause resumes it once there is room; a 9p root gets ENOSPC', async () => {
    const small = new TestDaemon();
    const data = path.join(small.dataRoot, 'data');
    fs.mkdirSync(data, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', data]);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      await small.start();
      await small.importBusybox();
      const st = async (name: string, fmt: string) => (await small.run(['inspect', '-f', fmt, name])).stdout.trim();
      const paused = async (name: string) => (await st(name, '{{.State.Status}}')) === 'paused';
      // Two that write a little now and then, to be stopped and removed while their VMs are stalled.
      const trickle = 'i=0; while true; do i=$((i+1)); dd if=/dev/zero of=/f$i bs=64k count=4 conv=fsync 2>/dev/null; sleep 0.2; done';
      for (const name of ['stuck1', 'stuck2']) assert.equal((await small.run(['run', '-d', '--name', name, 'busybox', 'sh', '-c', trickle])).code, 0);
      const run = await small.run(['run', '-d', '--name', 'hog', 'busybox', 'sh', '-c', 'echo before; dd if=/dev/zero of=/big bs=1M count=64 conv=fsync; echo rc=$?']);
      assert.equal(run.code, 0, run.stderr);
      // The sparse disks outgrow the 48 MB under them: QEMU pauses the VMs instead of failing the writes.
      await until('the containers paused by the full host filesystem', async () => (await paused('hog')) && (await paused('stuck1')) && (await paused('stuck2')), 120_000);
      const reason = /^paused: its writable disk cannot be written: the host filesystem of .* is full; free space and unpause it, or remove it$/;
      assert.match(await st('hog', '{{.State.Error}}'), reason);
      assert.match(small.log, /container [0-9a-f]{12}: paused: its writable disk cannot be written/);
      assert.match((await small.run(['ps', '--format', '{{.Names}} {{.Status}}'])).stdout, /^hog Up .*\(Paused\)$/m);
      // Still full: unpause retries the write, QEMU stops the VM again, and unpause says so.
      const still = /is still paused: its writable disk cannot be written: the host filesystem of .* is full/;
      const retry = await small.run(['unpause', 'hog']);
      assert.notEqual(retry.code, 0);
      assert.match(retry.stderr, still);
      assert.equal(await st('hog', '{{.State.Status}}'), 'paused');

      // The daemon dies and a new one starts on the same data root while the host is still full:
      // it keeps the stalled VMs, paused with the reason, instead of killing them.
      const pids = Object.fromEntries(await Promise.all(['hog', 'stuck1', 'stuck2'].map(async (n) => [n, Number(await st(n, '{{.State.Pid}}'))] as const)));
      await small.restart('SIGKILL');
      for (const [name, pid] of Object.entries(pids)) {
        assert.equal(await st(name, '{{.State.Status}} {{.State.Running}} {{.State.Pid}}'), `paused true ${pid}`, name);
        assert.ok(alive(pid), `${name}'s VM lives`);
      }
      assert.match(await st('hog', '{{.State.Error}}'), reason);
      assert.match(small.log, /kept container [0-9a-f]{12} \(VM pid \d+\) paused/);
      assert.doesNotMatch(small.log, /could not be re-attached|stopping a VM left by a previous daemon/);
      // And once more: the next daemon keeps them the same way.
      await small.restart('SIGKILL');
      for (const [name, pid] of Object.entries(pids)) assert.equal(await st(name, '{{.State.Status}} {{.State.Pid}}'), `paused ${pid}`, name);
      assert.doesNotMatch(small.log, /could not be re-attached|stopping a VM left by a previous daemon/);
      const exec = await small.run(['exec', 'hog', 'true']);
      assert.notEqual(exec.code, 0);
      assert.match(exec.stderr, /is paused, unpause the container before exec/);
      const stillFull = await small.run(['unpause', 'hog']);
      assert.notEqual(stillFull.code, 0);
      assert.match(stillFull.stderr, still);
      assert.equal(await st('hog', '{{.State.Status}}'), 'paused');
      assert.ok(alive(pids.hog!), 'a failed unpause keeps the VM');
      // A stalled VM cannot stop gracefully: stop ends it by pid (137), rm -f removes it.
      const stop = await small.run(['stop', '-t', '1', 'stuck1']);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(await st('stuck1', '{{.State.Status}} {{.State.ExitCode}}'), 'exited 137');
      const rm = await small.run(['rm', '-f', 'stuck2']);
      assert.equal(rm.code, 0, rm.stderr);
      await until('the stopped and removed VMs are gone', () => !alive(pids.stuck1!) && !alive(pids.stuck2!), 10_000);

      // Room again: unpause resumes the VM, QEMU retries the write, the agent is re-attached,
      // and the container finishes as if nothing happened (wait, logs, exit code).
      const waiter = small.run(['wait', 'hog'], { timeoutMs: 180_000 });
      execFileSync('mount', ['-o', 'remount,size=256m', data]);
      const unpause = await small.run(['unpause', 'hog']);
      assert.equal(unpause.code, 0, unpause.stderr);
      assert.equal((await waiter).stdout.trim(), '0');
      const logs = await small.run(['logs', 'hog']);
      assert.match(logs.stdout, /^before\n[^]*^rc=0$/m, logs.stdout + logs.stderr);
      assert.match(logs.stderr, /^64\+0 records out$/m, 'all 64 MiB written');
      assert.doesNotMatch(logs.stdout + logs.stderr, /No space left|I\/O error/);
      assert.equal(await st('hog', '{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}'), 'exited 0');
      for (const n of ['hog', 'stuck1']) assert.equal((await small.run(['rm', n])).code, 0);

      // Paused by the daemon that runs it, resumed by it once there is room: the write QEMU kept goes through.
      const shrink = (spareMiB: number) => {
        const now = fs.statfsSync(data);
        execFileSync('mount', ['-o', `remount,size=${Math.ceil(((now.blocks - now.bfree) * now.bsize) / 1048576) + spareMiB}m`, data]);
      };
      shrink(8);
      assert.equal((await small.run(['run', '-d', '--name', 'hog2', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/big bs=1M count=16 conv=fsync; echo rc=$?'])).code, 0);
      await until('hog2 paused', () => paused('hog2'), 60_000);
      execFileSync('mount', ['-o', 'remount,size=256m', data]);
      const unpause2 = await small.run(['unpause', 'hog2']);
      assert.equal(unpause2.code, 0, unpause2.stderr);
      assert.equal((await small.run(['wait', 'hog2'])).stdout.trim(), '0');
      assert.match((await small.run(['logs', 'hog2'])).stdout, /^rc=0$/m);
      assert.equal((await small.run(['rm', 'hog2'])).code, 0);

      // A 9p root (--storage-driver overlay) on a full host filesystem: ENOSPC inside, the daemon stays healthy.
      small.extraArgs.push('--storage-driver', 'overlay');
      await small.restart();
      shrink(16);
      const fill = await small.run(['run', '--name', 'fill9p', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/big bs=1M count=64; echo rc=$?']);
      assert.equal(await st('fill9p', '{{.GraphDriver.Name}}'), 'overlay');
      assert.match(fill.stderr + fill.stdout, /No space left on device/);
      assert.match(fill.stdout, /rc=1/);
      assert.equal((await small.run(['rm', 'fill9p'])).code, 0);
      assert.equal((await small.run(['run', '--rm', 'busybox', 'echo', 'still fine'])).stdout, 'still fine\n');
    } finally {
      await small.stop();
    }
  });
});
