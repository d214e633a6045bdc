/**
 * VMs outlive the daemon: after `kill -9` of hyperboxd, a new daemon re-attaches
 * to every running container's control channel, logs and exit code, and no line
 * a container printed around the kill is lost or logged twice.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';

let d: TestDaemon;
const inspect = async (name: string, fmt: string) => (await d.run(['inspect', '-f', fmt, name])).stdout.trim();
const qemuCount = () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('qemu-system') && l.includes(d.dataRoot)).length;

before(async () => {
  d = await startDaemonWithBusybox();
});
after(async () => d?.stop());

describe('live restore', () => {
  it('re-attaches running containers after the daemon is killed with SIGKILL, losing no line', async () => {
    // Fast tickers: lines are in flight when the daemon is killed (the agent
    // keeps output until the daemon has it in the log: guest/PROTOCOL.md).
    const ticker = 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.02; done';
    // ...and one that prints in bursts of 50 lines (about 2000 a second).
    const burst = 'i=0; while true; do i=$((i+1)); echo tick $i; [ $((i % 50)) = 0 ] && sleep 0.02; done';
    // The leaver is told to go through a bind (a root on disks is not a host directory).
    const sig = path.join(d.dataRoot, 'sig');
    fs.mkdirSync(sig);
    for (const args of [
      ['-d', '--name', 'tick', 'busybox', 'sh', '-c', burst],
      ['-d', '-t', '--name', 'tty', 'busybox', 'sh', '-c', ticker],
      ['-d', '--name', 'sleeper', 'busybox', 'sleep', '1000'],
      ['-d', '--name', 'quiet', 'busybox', 'sh', '-c', 'while true; do sleep 1; done'],
      ['-d', '--name', 'paused', 'busybox', 'sleep', '1000'],
      ['-d', '--name', 'leaver', '-v', `${sig}:/sig`, 'busybox', 'sh', '-c', 'while [ ! -f /sig/go ]; do sleep 0.2; done; echo bye; rm /sig/go; exit 42'],
    ]) {
      const r = await d.run(['run', ...args]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await d.run(['pause', 'paused'])).code, 0);
    assert.equal(await inspect('tick', '{{.GraphDriver.Name}}'), 'block', 'roots on disks (the default)');
    const follower = d.spawnCli(['logs', '-f', 'tick']);
    let followed = '';
    follower.stdout!.on('data', (c) => (followed += c));
    await until('logs -f running', () => followed.includes('tick 2'));
    follower.kill();
    const before = qemuCount();
    /** The ticker's lines as logged: every number once, in order, none missing. */
    const checkTicks = async (name: string, round: number) => {
      const lines = (await d.run(['logs', name])).stdout.replace(/\r/g, '').trim().split('\n');
      const numbers = lines.map((l) => Number(l.split(' ')[1]));
      const bad = numbers.findIndex((n, i) => n !== i + 1);
      assert.equal(bad, -1, `${name} after kill ${round}: line ${bad + 1} is ${JSON.stringify(lines[bad])} (no line lost, none twice, in order)`);
      return numbers.length;
    };

    const KILLS = 3;
    let ticks = 0;
    for (let round = 1; round <= KILLS; round++) {
      await d.kill();
      if (round === 1) {
        // While no daemon runs: one container exits (told so through its bind,
        // it answers by removing the file as it leaves), the others go on.
        const go = path.join(sig, 'go');
        fs.writeFileSync(go, '');
        await until('leaver to see /go and leave', () => !fs.existsSync(go), 20_000);
      } else {
        await new Promise((r) => setTimeout(r, 500)); // the tickers print with no daemon
      }
      // The leaver's VM goes once the daemon after the first kill has recorded its exit.
      assert.equal(qemuCount(), round === 1 ? before : before - 1, 'no VM was lost or duplicated');
      await d.start();
      if (round === 1) {
        await until('leaver exit recorded', async () => (await inspect('leaver', '{{.State.Status}} {{.State.ExitCode}}')) === 'exited 42', 20_000);
        await until("the leaver's VM to go", () => qemuCount() === before - 1, 10_000);
      }
      ticks = await checkTicks('tick', round);
      await checkTicks('tty', round);
      // Printed on after the restart (the process was not stuck on a full buffer), and still whole.
      await until(`tick prints on after kill ${round}`, async () => (await d.run(['logs', 'tick'])).stdout.trim().split('\n').length > ticks + 20);
    }
    ticks = await checkTicks('tick', KILLS);
    assert.ok(ticks > 100, `${ticks} lines`);

    const running = (await d.run(['ps', '--format', '{{.Names}}'])).stdout.trim().split('\n').sort();
    assert.deepEqual(running, ['paused', 'quiet', 'sleeper', 'tick', 'tty']);
    assert.equal((await d.run(['logs', 'leaver'])).stdout, 'bye\n', 'output printed while the daemon was down is kept, once');

    for (const n of ['tick', 'tty', 'sleeper', 'quiet']) {
      const r = await d.run(['exec', n, 'echo', `exec-${n}`]);
      assert.equal(r.stdout, `exec-${n}\n`, `exec in ${n}: ${r.stderr}`);
    }
    assert.equal(await inspect('paused', '{{.State.Status}}'), 'paused');
    assert.equal((await d.run(['unpause', 'paused'])).code, 0);
    assert.equal((await d.run(['exec', 'paused', 'echo', 'awake'])).stdout, 'awake\n');

    const stop = await d.run(['stop', '-t', '1', 'tick']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await inspect('tick', '{{.State.Running}}'), 'false');
    await checkTicks('tick', KILLS);
    for (const n of ['tick', 'tty', 'sleeper', 'quiet', 'paused', 'leaver']) await d.run(['rm', '-f', n]);
    await until('all VMs gone', () => qemuCount() === 0, 10_000);
  });

  it('marks a container whose VM died while the daemon was down as exited 137', async () => {
    assert.equal((await d.run(['run', '-d', '--name', 'victim', 'busybox', 'sleep', '1000'])).code, 0);
    const pid = Number(await inspect('victim', '{{.State.Pid}}'));
    await d.kill();
    process.kill(pid, 'SIGKILL');
    await d.restart();
    assert.equal(await inspect('victim', '{{.State.Status}} {{.State.ExitCode}}'), 'exited 137');
    assert.match(await inspect('victim', '{{.State.Error}}'), /the VM exited while the daemon was down/);
  });
});
