/**
 * QEMU confined (issue 13, part): every VM's QEMU runs under its seccomp
 * sandbox with no_new_privs and, as root, a bounding set cut to what its
 * devices need; a QEMU that tries to spawn a process is killed, and the
 * container is reported dead (137), not hung.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpClient } from '../src/vm/qemu/qmp.js';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';

const CAP_NAMES: Record<number, string> = { 0: 'chown', 1: 'dac_override', 3: 'fowner', 4: 'fsetid', 12: 'net_admin', 27: 'mknod', 31: 'setfcap' };

function statusOf(pid: number): Record<string, string> {
  return Object.fromEntries(
    fs
      .readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .map((l) => l.split(':\t'))
      .filter((p) => p.length === 2) as Array<[string, string]>,
  );
}

describe('QEMU confinement', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  it('runs every VM under seccomp with no_new_privs and a cut capability set', async () => {
    for (const args of [[], ['--no-clone']]) {
      const r = await d.run(['run', '-d', ...args, 'busybox', 'sleep', '1000']);
      assert.equal(r.code, 0, r.stderr);
      const id = r.stdout.trim();
      const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
      const st = statusOf(pid);
      assert.equal(st.Seccomp?.trim(), '2', 'seccomp filter mode');
      assert.equal(st.NoNewPrivs?.trim(), '1');
      if (process.getuid?.() === 0) {
        const eff = BigInt(`0x${st.CapEff!.trim()}`);
        const held = Object.entries(CAP_NAMES).filter(([bit]) => (eff >> BigInt(bit)) & 1n).map(([, n]) => n);
        assert.deepEqual(held.sort(), Object.values(CAP_NAMES).sort());
        assert.equal(eff & ~Object.keys(CAP_NAMES).reduce((m, b) => m | (1n << BigInt(b)), 0n), 0n, `no other capability: CapEff ${st.CapEff}`);
        assert.equal(BigInt(`0x${st.CapBnd!.trim()}`), eff, 'the bounding set is the same cut set');
      }
      await d.run(['rm', '-f', id]);
    }
  });

  it('kills a QEMU that tries to spawn a process; its container dies with 137', async () => {
    const r = await d.run(['run', '-d', 'busybox', 'sleep', '1000']);
    const id = r.stdout.trim();
    const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
    const qmp = await QmpClient.connect(path.join(d.dataRoot, 'data', 'run', id.slice(0, 12), 'qmp.sock'), 5000);
    // A bridge netdev makes QEMU fork+exec its bridge helper: the sandbox kills it (SIGSYS).
    await qmp.execute('netdev_add', { type: 'bridge', id: 'evil', br: 'hbnonexist0' }).catch(() => undefined);
    qmp.close();
    await until('QEMU to be killed', () => !fs.existsSync(`/proc/${pid}`) || statusOf(pid).State?.startsWith('Z'), 20_000);
    await until('the container to be reported dead', async () => (await d.run(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', id])).stdout.trim() === 'exited 137', 20_000);
    assert.match((await d.run(['inspect', '-f', '{{.State.Error}}', id])).stdout, /SIGSYS/);
    await d.run(['rm', '-f', id]);
  });
});
