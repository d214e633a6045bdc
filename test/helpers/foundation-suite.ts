/**
 * The foundation behaviours (issue 2), as one suite that can run against a
 * daemon in any start mode (cold boot, clone): the VM must be invisible to users.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, until, waitFor, type TestDaemon } from './daemon.js';

export function foundationSuite(label: string, daemonArgs: string[], expectMode?: string): void {
  const slug = label.replace(/[^a-z0-9]+/gi, '-');
  describe(`foundation (${label})`, () => {
    let d: TestDaemon;
    before(async () => {
      d = await startDaemonWithBusybox(daemonArgs);
    });
    after(async () => {
      await d?.stop();
    });

    it('keeps stdout and stderr apart and returns the exit code', async () => {
      const r = await d.run(['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      assert.equal(r.stdout, 'out\n');
      assert.equal(r.stderr, 'err\n');
      assert.equal(r.code, 3);
    });

    it('runs the process in a VM with its own kernel and memory', async () => {
      const r = await d.run(['run', '--rm', '--memory', '200m', 'busybox', 'sh', '-c', 'uname -r; grep MemTotal /proc/meminfo']);
      assert.equal(r.code, 0, r.stderr);
      const [kernel, mem] = r.stdout.trim().split('\n');
      assert.notEqual(kernel, os.release());
      const kib = Number(/(\d+)/.exec(mem!)![1]);
      // --memory 200m gives the guest 200 MiB plus 64 MiB of VM overhead.
      assert.ok(kib > 200 * 1024 && kib <= 264 * 1024, `guest MemTotal ${kib} kB`);
      assert.ok(kib * 1024 < os.totalmem() / 4);
    });

    it('pipes stdin with -i', async () => {
      const r = await d.run(['run', '-i', '--rm', 'busybox', 'cat'], { input: 'abc\n' });
      assert.equal(r.stdout, 'abc\n');
      assert.equal(r.code, 0);
    });

    it('applies -e -w -u --hostname --name --entrypoint', async () => {
      const r = await d.run([
        'run', '--rm', '--name', `named-${slug}`, '-e', 'FOO=bar', '-w', '/tmp/work', '-u', 'nobody', '--hostname', 'myhost',
        '--entrypoint', '/bin/sh', 'busybox', '-c', 'echo $FOO; pwd; id -u; hostname; cat /etc/hostname',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['bar', '/tmp/work', '65534', 'myhost', 'myhost']);
    });

    it('runs detached: exec, logs, logs -f, stop, rm, and ps shows the states', async () => {
      const name = `web-${slug}`;
      const script = 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done';
      // --init: sh as PID 1 of its namespace would ignore stop's SIGTERM (as on Docker)
      const r = await d.run(['run', '-d', '--init', '--name', name, 'busybox', 'sh', '-c', script]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout.trim(), /^[a-f0-9]{64}$/);
      const ps = await d.run(['ps', '--format', '{{.Names}} {{.State}}']);
      assert.match(ps.stdout, new RegExp(`^${name} running$`, 'm'));

      const ex = await d.run(['exec', name, 'sh', '-c', 'echo in-exec; echo oops >&2; exit 5']);
      assert.equal(ex.stdout, 'in-exec\n');
      assert.equal(ex.stderr, 'oops\n');
      assert.equal(ex.code, 5);
      const exi = await d.run(['exec', '-i', name, 'cat'], { input: 'piped\n' });
      assert.equal(exi.stdout, 'piped\n');

      await until('some logs', async () => (await d.run(['logs', name])).stdout.includes('tick 2'));
      // logs -f keeps following: lines appear that did not exist when it started.
      const follower = d.spawnCli(['logs', '-f', name]);
      let followed = '';
      follower.stdout!.on('data', (c) => (followed += c));
      const before = (await d.run(['logs', name])).stdout.trim().split('\n').length;
      await until('followed new lines', () => followed.includes(`tick ${before + 3}`));

      const stop = await d.run(['stop', name]);
      assert.equal(stop.code, 0, stop.stderr);
      await until('follower ends', () => follower.exitCode !== null);
      // 143: sh exited on the SIGTERM the init passed on, not on a SIGKILL after the timeout (137).
      const exited = await d.run(['ps', '-a', '--format', '{{.Names}} {{.State}} {{.Status}}']);
      assert.match(exited.stdout, new RegExp(`^${name} exited Exited \\(143\\)`, 'm'));
      assert.equal((await d.run(['ps', '-q'])).stdout.includes(r.stdout.slice(0, 12)), false);
      const rm = await d.run(['rm', name]);
      assert.equal(rm.code, 0);
      assert.equal((await d.run(['ps', '-a', '-q'])).stdout.includes(r.stdout.slice(0, 12)), false);
    });

    it('stop sends SIGTERM, then SIGKILL after -t', async () => {
      const name = `stubborn-${slug}`;
      await d.run(['run', '-d', '--name', name, 'busybox', 'sh', '-c', 'trap "echo ignoring TERM" TERM; while true; do sleep 0.2; done']);
      await until('running', async () => (await d.run(['exec', name, 'true'])).code === 0);
      const t0 = Date.now();
      const stop = await d.run(['stop', '-t', '2', name]);
      const took = Date.now() - t0;
      assert.equal(stop.code, 0, stop.stderr);
      assert.ok(took >= 2000, `stop returned after ${took} ms, before the timeout`);
      assert.equal((await d.run(['inspect', '-f', '{{.State.ExitCode}}', name])).stdout.trim(), '137');
      assert.match((await d.run(['logs', name])).stdout, /ignoring TERM/);
      await d.run(['rm', name]);
    });

    it('kill -s delivers a signal; wait reports the exit code', async () => {
      const name = `killme-${slug}`;
      await d.run(['run', '-d', '--name', name, 'busybox', 'sh', '-c', 'trap "exit 42" USR1; while true; do sleep 0.2; done']);
      await until('running', async () => (await d.run(['exec', name, 'true'])).code === 0);
      const waiter = d.run(['wait', name]);
      assert.equal((await d.run(['kill', '-s', 'USR1', name])).code, 0);
      const w = await waiter;
      assert.equal(w.stdout.trim(), '42');
      assert.equal((await d.run(['rm', '-f', name])).code, 0);
    });

    it('rm refuses a running container unless -f', async () => {
      const name = `busy-${slug}`;
      await d.run(['run', '-d', '--name', name, 'busybox', 'sleep', '1000']);
      const rm = await d.run(['rm', name]);
      assert.notEqual(rm.code, 0);
      assert.match(rm.stderr, /running/);
      assert.equal((await d.run(['rm', '-f', name])).code, 0);
      assert.equal((await d.run(['ps', '-a', '--format', '{{.Names}}'])).stdout.includes(name), false);
    });

    it('runs an interactive shell with a TTY and sees window resizes', async () => {
      const session = `hb-${process.pid}-${slug}`;
      const cmd = `HYPERBOX_HOST=${d.host} ${process.cwd()}/bin/hyperbox run -it --rm busybox sh`;
      execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '100', '-y', '30', cmd]);
      const screen = () => execFileSync('tmux', ['capture-pane', '-t', session, '-p'], { encoding: 'utf8' });
      try {
        await until('a prompt', () => screen().includes('/ #'), 30_000);
        execFileSync('tmux', ['send-keys', '-t', session, 'stty size; tty', 'Enter']);
        await until('stty output', () => /30 100/.test(screen()) && /\/dev\/pts\/\d/.test(screen()));
        execFileSync('tmux', ['resize-window', '-t', session, '-x', '120', '-y', '40']);
        // The new size reaches the guest's terminal asynchronously: ask until it shows.
        await waitFor(
          () => {
            if (/40 120/.test(screen())) return true;
            execFileSync('tmux', ['send-keys', '-t', session, 'stty size', 'Enter']);
            return false;
          },
          { what: 'the guest to see 40 rows and 120 columns', intervalMs: 300 },
        );
        execFileSync('tmux', ['send-keys', '-t', session, 'exit', 'Enter']);
        await until('session ends', () => spawnSync('tmux', ['has-session', '-t', session]).status !== 0);
      } finally {
        spawnSync('tmux', ['kill-session', '-t', session]);
      }
    });

    it('gives Docker exit codes and one-line errors for bad input', async () => {
      const noImage = await d.run(['run', '--rm', 'nosuchimage', 'true']);
      assert.equal(noImage.code, 125);
      assert.match(noImage.stderr, /No such image: nosuchimage:latest/);
      assert.equal(noImage.stderr.trim().split('\n').length, 1);

      const notFound = await d.run(['run', '--rm', 'busybox', 'nosuchcmd']);
      assert.equal(notFound.code, 127);
      assert.match(notFound.stderr, /executable file not found in \$PATH/);

      const notExec = await d.run(['run', '--rm', 'busybox', '/etc/passwd']);
      assert.equal(notExec.code, 126);
      assert.match(notExec.stderr, /permission denied/);

      const badFlag = await d.run(['run', '--rm', '--memory', 'lots', 'busybox', 'true']);
      assert.equal(badFlag.code, 125);
      assert.match(badFlag.stderr, /invalid argument "lots" for "-m, --memory" flag/);

      const unknownFlag = await d.run(['run', '--bogus', 'busybox', 'true']);
      assert.equal(unknownFlag.code, 125);

      const badExec = await d.run(['exec', 'nosuchcontainer', 'true']);
      assert.equal(badExec.code, 125);
      assert.match(badExec.stderr, /No such container: nosuchcontainer/);
      // --rm containers that failed to start are gone
      assert.equal((await d.run(['ps', '-a', '-q'])).stdout.trim(), '');
    });

    it('marks a container whose QEMU was killed as exited 137 and stays healthy', async () => {
      const name = `victim-${slug}`;
      await d.run(['run', '-d', '--name', name, 'busybox', 'sleep', '1000']);
      const info = JSON.parse((await d.run(['inspect', name])).stdout)[0];
      const pid = info.State.Pid as number;
      assert.ok(pid > 0);
      assert.match(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /qemu-system/);
      if (expectMode) assert.equal(info.HyperBox.Start.mode, expectMode);
      process.kill(pid, 'SIGKILL');
      await until('exited', async () => (await d.run(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', name])).stdout.trim() === 'exited 137');
      const again = await d.run(['run', '--rm', 'busybox', 'echo', 'still fine']);
      assert.equal(again.stdout, 'still fine\n');
      await d.run(['rm', name]);
    });

    it('survives a guest that floods its output', async () => {
      const name = `flood-${slug}`;
      const flood = d.run(['run', '--rm', '--name', name, 'busybox', 'sh', '-c', 'head -c 20000000 /dev/zero | tr "\\0" x; echo; echo done'], { timeoutMs: 120_000 });
      // The daemon answers while the guest floods: ps lists the flooding container.
      await until('ps to list the flooding container', async () => {
        const ps = await d.run(['ps', '--format', '{{.Names}}']);
        assert.equal(ps.code, 0, ps.stderr);
        return ps.stdout.split('\n').includes(name);
      }, 60_000);
      const r = await flood;
      assert.equal(r.code, 0);
      assert.equal(r.stdout.length, 20000000 + 1 + 5);
      assert.ok(r.stdout.endsWith('\ndone\n'));
    });
  });
}
