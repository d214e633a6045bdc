/**
 * The real `docker` CLI (28.x, API 1.51) drives hyperboxd unchanged: the flows a
 * Docker user runs every day, each against VMs that boot for real.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';
import { docker, dockerEnv } from './helpers/docker.js';

let d: TestDaemon;

before(async () => {
  d = await startDaemonWithBusybox();
});
after(async () => {
  await docker(d, ['rm', '-f', 'web']).catch(() => undefined);
  await d?.stop();
});

describe('docker CLI against hyperboxd', () => {
  it('version and info show hyperbox and the accelerator', async () => {
    const v = await docker(d, ['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}} {{range .Server.Components}}{{.Name}}={{.Details.Accelerator}} {{end}}']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^0\.1\.0 1\.51 .*hypervisor=(tcg|kvm)/);
    const i = await docker(d, ['info', '--format', '{{.OperatingSystem}}|{{json .Labels}}|{{.Driver}}']);
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, /hyperbox \(QEMU .* accelerator: (tcg|kvm)\)\|.*hyperbox\.accelerator=.*\|block$/m, 'block is the default storage driver');
  });

  it('run prints output, keeps stdout and stderr apart, and returns the exit code', async () => {
    const hi = await docker(d, ['run', '--rm', 'busybox', 'echo', 'hi']);
    assert.equal(hi.code, 0, hi.stderr);
    assert.equal(hi.stdout, 'hi\n');
    const split = await docker(d, ['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(split.code, 7);
    assert.equal(split.stdout, 'out\n');
    assert.equal(split.stderr, 'err\n');
    const missing = await docker(d, ['run', '--rm', 'busybox', 'no-such-command']);
    assert.equal(missing.code, 127);
    const piped = await docker(d, ['run', '-i', '--rm', 'busybox', 'cat'], { input: 'abc\n' });
    assert.equal(piped.stdout, 'abc\n');
  });

  it('run -d, ps, logs -f, exec, inspect, top, stats, diff, pause, rename, stop, wait, rm -f', async () => {
    // --init: sh as PID 1 of its namespace would ignore stop's SIGTERM (as on Docker)
    const run = await docker(d, ['run', '-d', '--init', '--name', 'web', 'busybox', 'sh', '-c', 'echo ready; while true; do sleep 0.3; if [ -f /go ]; then echo went; rm /go; fi; done']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout.trim(), /^[0-9a-f]{64}$/);
    const ps = await docker(d, ['ps', '--format', '{{.Names}} {{.Image}} {{.Status}}']);
    assert.match(ps.stdout, /^web busybox(:latest)? Up /m);

    const follow = spawn('docker', ['logs', '-f', 'web'], { env: dockerEnv(d) });
    let followed = '';
    follow.stdout.on('data', (c) => (followed += c));
    await until('logs -f shows history', () => followed.includes('ready'));
    const ex = await docker(d, ['exec', 'web', 'sh', '-c', 'touch /go; echo from-exec; exit 4']);
    assert.equal(ex.code, 4);
    assert.equal(ex.stdout, 'from-exec\n');
    await until('logs -f follows new output', () => followed.includes('went'));

    const fmt = await docker(d, ['inspect', '--format', '{{.State.Status}} {{.State.Running}} {{.Config.Image}}', 'web']);
    assert.equal(fmt.stdout.trim(), 'running true busybox');
    const top = await docker(d, ['top', 'web']);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /^UID\s+PID\s+PPID/);
    assert.match(top.stdout, /sh -c echo ready/);
    const stats = await docker(d, ['stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}} {{.PIDs}}', 'web']);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /^web \d+(\.\d+)?MiB \/ \d+(\.\d+)?MiB [1-9]/);

    assert.equal((await docker(d, ['exec', 'web', 'sh', '-c', 'echo x > /tmp/new; rm /bin/vi'])).code, 0);
    const diff = await docker(d, ['diff', 'web']);
    assert.match(diff.stdout, /^A \/tmp\/new$/m);
    assert.match(diff.stdout, /^D \/bin\/vi$/m);

    assert.equal((await docker(d, ['pause', 'web'])).code, 0);
    assert.match((await docker(d, ['ps', '--format', '{{.Status}}'])).stdout, /\(Paused\)/);
    assert.equal((await docker(d, ['unpause', 'web'])).code, 0);
    assert.equal((await docker(d, ['rename', 'web', 'web2'])).code, 0);
    assert.equal((await docker(d, ['rename', 'web2', 'web'])).code, 0);

    const waiter = docker(d, ['wait', 'web']);
    const stop = await docker(d, ['stop', '-t', '1', 'web']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await waiter).stdout.trim(), '143');
    assert.equal((await docker(d, ['inspect', '--format', '{{.State.ExitCode}}', 'web'])).stdout.trim(), '143');
    follow.kill();
    assert.equal((await docker(d, ['rm', '-f', 'web'])).code, 0);
    assert.doesNotMatch((await docker(d, ['ps', '-a'])).stdout, /web/);
  });

  it('exec -it runs an interactive shell in a terminal', async () => {
    assert.equal((await docker(d, ['run', '-d', '--name', 'term', 'busybox', 'sleep', '1000'])).code, 0);
    try {
      // script(1) gives the docker CLI a real pseudo-terminal.
      const r = spawnSync('script', ['-qec', 'stty cols 77 rows 22; docker exec -it term sh -c "tty; stty size"', '/dev/null'], {
        env: dockerEnv(d),
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /\/dev\/pts\/\d+/);
      assert.match(r.stdout, /22 77/);
    } finally {
      await docker(d, ['rm', '-f', 'term']);
    }
  });

  it('events streams the lifecycle of a container', async () => {
    const ev = spawn('docker', ['events', '--format', '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'], { env: dockerEnv(d) });
    let seen = '';
    ev.stdout.on('data', (c) => (seen += c));
    // Subscribed once an event of our own comes through (a tag removed, again and again until one does).
    await until('the events stream to be subscribed', async () => {
      await docker(d, ['tag', 'busybox', 'events-probe:1']);
      await docker(d, ['rmi', 'events-probe:1']);
      return seen.includes('image untag');
    });
    assert.equal((await docker(d, ['run', '--rm', '--name', 'evt', 'busybox', 'true'])).code, 0);
    await until('events for the whole lifecycle', () => ['create', 'start', 'die', 'destroy'].every((a) => seen.includes(`container ${a} evt`)));
    ev.kill();
  });

  it('images, tag, rmi, and errors with Docker status codes', async () => {
    assert.match((await docker(d, ['images'])).stdout, /^busybox\s+latest\s+[0-9a-f]{12}/m);
    assert.equal((await docker(d, ['tag', 'busybox', 'mine/bb:2'])).code, 0);
    assert.match((await docker(d, ['images', '--format', '{{.Repository}}:{{.Tag}}'])).stdout, /^mine\/bb:2$/m);
    const rmi = await docker(d, ['rmi', 'mine/bb:2']);
    assert.equal(rmi.code, 0, rmi.stderr);
    assert.match(rmi.stdout, /Untagged: mine\/bb:2/);
    const nope = await docker(d, ['inspect', 'no-such-thing']);
    assert.equal(nope.code, 1);
    assert.match(nope.stderr, /No such object: no-such-thing/);
    const stopGone = await docker(d, ['stop', 'no-such-container']);
    assert.equal(stopGone.code, 1);
    assert.match(stopGone.stderr, /No such container: no-such-container/);
  });
});
