/**
 * Pod members isolated inside their shared VM (issue 13): each container's
 * processes live in a PID namespace of their own with their own /proc, so a
 * member sees neither the agent nor another member's processes, and so cannot
 * reach another member's root or volumes through /proc/PID/root; processes get
 * Docker's capability set, with --cap-add, --cap-drop and --privileged honoured
 * (checked through the real docker CLI); `exec` joins the container's PID
 * namespace; `--init` forwards `stop`'s SIGTERM to a process that has no handler.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';

let d: TestDaemon;
before(async () => {
  d = await startDaemonWithBusybox();
});
after(async () => {
  await d?.stop();
});

/** Runs a shell script in a running container. */
const sh = (name: string, script: string) => d.run(['exec', name, 'sh', '-c', script]);

describe('pod members', () => {
  it("cannot see each other's processes, nor reach each other's root or volumes, nor the agent", async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'iso'])).code, 0);
    const b = await d.run(['run', '-d', '--pod', 'iso', '--name', 'mb', '-v', 'iso-b:/data', 'busybox', 'sh', '-c',
      'echo secret-b > /data/secret; echo marker-b > /marker-b; exec sleep 1001']);
    assert.equal(b.code, 0, b.stderr);
    const a = await d.run(['run', '-d', '--pod', 'iso', '--name', 'ma', 'busybox', 'sleep', '1000']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal((await sh('mb', 'until [ -f /marker-b ]; do sleep 0.1; done; cat /data/secret')).stdout, 'secret-b\n');

    // A's /proc holds A's processes only: PID 1 is its own main process.
    const procs = await sh('ma', 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr "\\0" " " < $p/cmdline)"; done');
    assert.equal(procs.code, 0, procs.stderr);
    assert.match(procs.stdout, /^1 sleep 1000 $/m);
    assert.doesNotMatch(procs.stdout, /sleep 1001|marker-b|\binit\b/, 'a member sees another member or the agent');
    assert.equal((await sh('ma', 'cat /proc/1/cmdline | tr "\\0" " "')).stdout, 'sleep 1000 ');

    // Every /proc/*/root A can list is its own root: B's files and volume are nowhere.
    const roots = await sh('ma', 'ls /proc/*/root/ /proc/1/root/; cat /proc/*/root/data/secret /proc/*/root/marker-b 2>&1; true');
    assert.match(roots.stdout, /\bbin\b/);
    assert.doesNotMatch(roots.stdout, /marker-b\n|secret-b/);
    const search = await sh('ma', 'grep -rl secret-b /proc/[0-9]*/root/data /proc/[0-9]*/cwd/data 2>/dev/null; ls -d /proc/[0-9]*/root/marker-b /proc/[0-9]*/cwd/marker-b 2>/dev/null; echo done');
    assert.equal(search.stdout, 'done\n');

    // Without CAP_SYS_ADMIN it cannot mount a procfs (or anything) to look elsewhere; /proc/sys is read-only.
    assert.notEqual((await sh('ma', 'mkdir -p /mnt/p && mount -t proc proc /mnt/p')).code, 0);
    assert.match((await sh('ma', "awk '$5 == \"/proc/sys\" { print $6 }' /proc/self/mountinfo")).stdout, /^ro\b/);
    assert.notEqual((await sh('ma', 'echo "|/x" > /proc/sys/kernel/core_pattern')).code, 0);

    // exec joins the container's PID namespace: `ps` shows the container's processes, PID 1 first.
    const ps = await d.run(['exec', 'mb', 'ps', '-o', 'pid,args']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(ps.stdout, /^\s*1 sleep 1001$/m);
    assert.doesNotMatch(ps.stdout, /sleep 1000/);
    // Each member's PID namespace is its own.
    const nsA = (await d.run(['exec', 'ma', 'readlink', '/proc/self/ns/pid'])).stdout.trim();
    const nsB = (await d.run(['exec', 'mb', 'readlink', '/proc/self/ns/pid'])).stdout.trim();
    assert.match(nsA, /^pid:\[\d+\]$/);
    assert.notEqual(nsA, nsB);
    assert.equal((await d.run(['exec', 'ma', 'readlink', '/proc/1/ns/pid'])).stdout.trim(), nsA);

    // Restarted in the same VM, a member gets a new namespace and a fresh /proc (the old one is gone, not stacked).
    assert.equal((await d.run(['restart', '-t', '0', 'ma'])).code, 0);
    const again = await sh('ma', 'echo "$(tr "\\0" " " < /proc/1/cmdline)"; readlink /proc/self/ns/pid; grep -c " /proc proc " /proc/self/mounts');
    const [cmd, ns, procMounts] = again.stdout.split('\n');
    assert.equal(cmd, 'sleep 1000 ');
    assert.notEqual(ns, nsA);
    assert.equal(procMounts, '1');

    assert.equal((await d.run(['pod', 'rm', '-f', 'iso'])).code, 0);
    await d.run(['volume', 'rm', 'iso-b']);
  });
});

describe('capabilities (docker CLI)', () => {
  const status = async (args: string[], field = 'CapEff') => {
    const r = await docker(d, ['run', '--rm', ...args, 'busybox', 'grep', `^${field}:`, '/proc/self/status']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split(/\s+/)[1];
  };

  it("gives Docker's default set, and honours --cap-add, --cap-drop and --privileged", async () => {
    assert.equal(await status([]), '00000000a80425fb');
    assert.equal(await status([], 'CapBnd'), '00000000a80425fb');
    assert.equal(await status([], 'CapInh'), '0000000000000000');
    assert.equal(await status([], 'CapAmb'), '0000000000000000');
    assert.equal(await status(['--cap-add', 'NET_ADMIN']), '00000000a80435fb');
    assert.equal(await status(['--cap-drop', 'CHOWN']), '00000000a80425fa');
    assert.equal(await status(['--cap-drop', 'all', '--cap-add', 'cap_kill']), '0000000000000020');
    assert.equal(await status(['--privileged']), '000001ffffffffff');
    // Another user has no effective capability, under the same bounding set.
    assert.equal(await status(['--user', '1000']), '0000000000000000');
    assert.equal(await status(['--user', '1000'], 'CapBnd'), '00000000a80425fb');
    // The capability works: NET_ADMIN may bring an interface down, the default set may not.
    assert.notEqual((await docker(d, ['run', '--rm', 'busybox', 'ip', 'link', 'set', 'lo', 'down'])).code, 0);
    assert.equal((await docker(d, ['run', '--rm', '--cap-add', 'NET_ADMIN', 'busybox', 'ip', 'link', 'set', 'lo', 'down'])).code, 0);
    // CAP_CHOWN dropped: root cannot chown.
    assert.notEqual((await docker(d, ['run', '--rm', '--cap-drop', 'CHOWN', 'busybox', 'chown', '1000', '/tmp'])).code, 0);

    const bad = await docker(d, ['run', '--rm', '--cap-add', 'FLY', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /invalid CapAdd: unknown capability: "CAP_FLY"/);
  });

  it('reports them in inspect, and exec gets the container\'s set', async () => {
    const r = await docker(d, ['run', '-d', '--name', 'capped', '--cap-add', 'NET_ADMIN', '--cap-drop', 'CHOWN', 'busybox', 'sleep', '1000']);
    assert.equal(r.code, 0, r.stderr);
    const hc = await docker(d, ['inspect', '-f', '{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} {{.HostConfig.Privileged}}', 'capped']);
    // As the docker CLI sent them (it adds the CAP_ prefix itself).
    assert.equal(hc.stdout.trim(), '["CAP_NET_ADMIN"] ["CAP_CHOWN"] false');
    const ex = await docker(d, ['exec', 'capped', 'grep', '^CapEff:', '/proc/self/status']);
    assert.equal(ex.stdout.split(/\s+/)[1], '00000000a80435fa');
    // PID 1 of its namespace ignores a SIGTERM it has no handler for, as on Docker: stop waits, then kills.
    const stop = await docker(d, ['stop', '-t', '1', 'capped']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await docker(d, ['inspect', '-f', '{{.State.ExitCode}}', 'capped'])).stdout.trim(), '137');
    await docker(d, ['rm', '-f', 'capped']);
  });

  it('--init forwards the stop signal and reaps; exec still sees the process', async () => {
    const r = await docker(d, ['run', '-d', '--init', '--name', 'inited', 'busybox', 'sleep', '1000']);
    assert.equal(r.code, 0, r.stderr);
    const ps = await docker(d, ['exec', 'inited', 'ps', '-o', 'pid,args']);
    assert.match(ps.stdout, /^\s*2 sleep 1000$/m);
    assert.equal((await docker(d, ['inspect', '-f', '{{.HostConfig.Init}}', 'inited'])).stdout.trim(), 'true');
    // A long stop timeout: a SIGTERM that did not reach sleep shows as waiting all of it
    // (and as 137 below), while a busy machine's slower stop stays far from it.
    const t0 = Date.now();
    const stop = await docker(d, ['stop', '-t', '60', 'inited'], { timeoutMs: 120_000 });
    assert.equal(stop.code, 0, stop.stderr);
    assert.ok(Date.now() - t0 < 60_000, 'stop waited for its timeout: SIGTERM did not reach sleep');
    assert.equal((await docker(d, ['inspect', '-f', '{{.State.ExitCode}}', 'inited'])).stdout.trim(), '143');
    await docker(d, ['rm', '-f', 'inited']);
  });
});
