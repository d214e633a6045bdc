/**
 * containerd-shim-hyperbox-v2 under a real containerd (Debian's 1.6, its own
 * root, state and socket) and its own client, ctr: a busybox image imported as
 * an OCI archive runs with `--runtime io.containerd.hyperbox.v2` in a VM the
 * shim owns through the sandbox library; output, exit codes, exec, kill, and
 * a killed shim leaving no QEMU behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxArchive, RUNTIME, TestContainerd } from './helpers/containerd.js';
import { qemuProcesses, waitFor } from './helpers/daemon.js';

const IMAGE = 'docker.io/library/busybox:latest';

/** Pids of the serving shims whose pod directories are under STATE. */
function shimPids(state: string): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      return cmd.includes('containerd-shim-hyperbox-v2') && cmd.includes(state) && cmd.endsWith('serve\0');
    } catch {
      return false;
    }
  }).map(Number);
}

describe('containerd shim v2 (ctr)', () => {
  const ctd = new TestContainerd();
  const ok = (args: string[], input?: string) => {
    const r = ctd.ctr(args, { input });
    assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    await ctd.start();
    ok(['image', 'import', '--base-name', 'docker.io/library/busybox', busyboxArchive(ctd.dir)]);
  });
  after(async () => {
    if (process.exitCode) process.stderr.write(ctd.log().slice(-4000));
    await ctd.stop();
  });

  it('runs a container: its output and its exit code come through, and --rm leaves nothing', () => {
    const r = ctd.ctr(['run', '--runtime', RUNTIME, '--rm', IMAGE, 'hello', 'sh', '-c', 'echo hello; echo to-stderr >&2; exit 3']);
    assert.equal(r.stdout, 'hello\n', r.stderr);
    assert.match(r.stderr, /to-stderr/);
    assert.equal(r.code, 3);
    assert.equal(ok(['container', 'ls', '-q']).trim(), '');
    assert.deepEqual(qemuProcesses(ctd.shimState), [], 'the VM is gone with the container');
  });

  it('passes stdin through and applies the spec (cwd, env)', () => {
    const r = ctd.ctr(['run', '--runtime', RUNTIME, '--rm', '--cwd', '/tmp', '--env', 'GREETING=hi there', IMAGE, 'spec', 'sh', '-c', 'cat; echo "$(pwd) $GREETING $(id -u)"'], { input: 'from stdin\n' });
    assert.equal(r.stdout, 'from stdin\n/tmp hi there 0\n', r.stderr);
    assert.equal(r.code, 0);
  });

  it('execs in a running container, kills it, and a killed shim leaves no QEMU', async () => {
    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'long', 'sh', '-c', 'echo started > /tmp/mark; sleep 600']);
    const e = ctd.ctr(['task', 'exec', '--exec-id', 'e1', 'long', 'sh', '-c', 'cat /tmp/mark; exit 4']);
    assert.equal(e.stdout, 'started\n', e.stderr);
    assert.equal(e.code, 4);
    const u = ctd.ctr(['task', 'exec', '--exec-id', 'e2', '--user', '1000', '--cwd', '/etc', 'long', 'sh', '-c', 'echo $(pwd) $(id -u)']);
    assert.equal(u.stdout, '/etc 1000\n', u.stderr);
    assert.match(ok(['task', 'ls']), /long\s+\d+\s+RUNNING/);
    ok(['task', 'kill', '-s', 'SIGKILL', 'long']);
    await waitFor(() => /long\s+\d+\s+STOPPED/.test(ok(['task', 'ls'])), { what: 'the task to stop', timeoutMs: 30_000, intervalMs: 200 });
    ok(['task', 'delete', 'long']);
    ok(['container', 'delete', 'long']);
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0, { what: 'the VM to go with its shim', timeoutMs: 30_000, intervalMs: 200 });

    ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'orphan', 'sleep', '600']);
    const [shim] = shimPids(ctd.shimState);
    assert.ok(shim, 'the shim serves the container');
    assert.equal(qemuProcesses(ctd.shimState).length, 1);
    process.kill(shim, 'SIGKILL');
    await waitFor(() => qemuProcesses(ctd.shimState).length === 0, { what: "containerd's delete to stop the dead shim's VM", timeoutMs: 30_000, intervalMs: 200 });
    await waitFor(() => fs.readdirSync(path.join(ctd.shimState, 'pods')).length === 0, { what: 'the pod directory to be removed', timeoutMs: 10_000, intervalMs: 100 });
  });
});
