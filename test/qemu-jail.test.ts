/**
 * QEMU confined (issue 13 item 1): every VM's QEMU runs under its seccomp
 * sandbox with no_new_privs and, as root, a bounding set cut to what its
 * devices need, in its own mount namespace whose root holds only that VM's
 * files, its own PID namespace, and a cgroup bounding memory, tasks and CPU;
 * a QEMU that tries to spawn a process is killed, and the container is
 * reported dead (137), not hung.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import type { VmSpec } from '../src/vm/qemu/args.js';
import { jailedCommand, releaseJail } from '../src/vm/qemu/jail.js';
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

  it('runs QEMU in its own mount and PID namespaces, seeing only its own files', { skip: process.getuid?.() !== 0 }, async () => {
    const vol = fs.mkdtempSync('/tmp/hb-jail-vol-');
    fs.writeFileSync(path.join(vol, 'note'), 'from the host');
    const a = (await d.run(['run', '-d', '-v', `${vol}:/data`, 'busybox', 'sleep', '1000'])).stdout.trim();
    const b = (await d.run(['run', '-d', 'busybox', 'sleep', '1000'])).stdout.trim();
    try {
      const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', a])).stdout.trim());
      const ns = (p: number | 'self', kind: string) => fs.readlinkSync(`/proc/${p}/ns/${kind}`);
      assert.notEqual(ns(pid, 'mnt'), ns('self', 'mnt'), 'own mount namespace');
      assert.notEqual(ns(pid, 'pid'), ns('self', 'pid'), 'own PID namespace');
      assert.equal(statusOf(pid).NSpid?.trim().split(/\s+/).pop(), '1', 'QEMU is PID 1 of its namespace');
      const root = `/proc/${pid}/root`;
      // Its root: the system's read-only binaries, a minimal /dev and its own run directory, shares and assets.
      assert.deepEqual(fs.readdirSync(`${root}/dev`).filter((n) => /^(sd|vd|nvme|loop|mem|kmsg|port)/.test(n)), [], 'no host disks or memory devices');
      assert.equal(fs.existsSync(`${root}/etc/shadow`), false, 'no host /etc');
      assert.equal(fs.existsSync(`${root}${d.dataRoot}/data/hyperbox.db`), false, 'no daemon database');
      assert.equal(fs.existsSync(`${root}${d.dataRoot}/data/run/${b.slice(0, 12)}`), false, "no other VM's run directory");
      assert.ok(fs.existsSync(`${root}${d.dataRoot}/data/run/${a.slice(0, 12)}/qmp.sock`), 'its own run directory');
      assert.throws(() => fs.writeFileSync(`${root}/usr/hb-jail-probe`, 'x'), /EROFS|EACCES|EPERM/, '/usr is read-only');
      // The volume still works through the jail (9p reaches the bind inside it).
      assert.equal((await d.run(['exec', a, 'cat', '/data/note'])).stdout, 'from the host');
    } finally {
      await d.run(['rm', '-f', a, b]);
      fs.rmSync(vol, { recursive: true, force: true });
    }
  });

  it('puts each QEMU in a cgroup bounded by the container\'s memory and CPUs, removed with it', { skip: process.getuid?.() !== 0 }, async () => {
    const id = (await d.run(['run', '-d', '-m', '256m', '--cpus', '1', 'busybox', 'sleep', '1000'])).stdout.trim();
    const pid = Number((await d.run(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
    const groups = Object.fromEntries(
      fs
        .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(':'))
        .map(([, ctrl, p]) => [ctrl || 'unified', p!]),
    );
    const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
    const dirOf = (ctrl: string) => (v2 ? `/sys/fs/cgroup${groups.unified}` : `/sys/fs/cgroup/${ctrl}${groups[ctrl]}`);
    const read = (ctrl: string, file: string) => fs.readFileSync(path.join(dirOf(ctrl), file), 'utf8').trim();
    for (const ctrl of ['memory', 'pids', 'cpu']) assert.match(v2 ? groups.unified! : groups[ctrl]!, /^\/hyperbox\/vm-[0-9a-f]{12}-[0-9a-f]{12}$/, `${ctrl} group`);
    const guestMiB = Number((await d.run(['inspect', '-f', '{{.HostConfig.Memory}}', id])).stdout.trim()) / 1048576;
    assert.ok(guestMiB >= 256, `guest memory ${guestMiB} MiB`);
    const mem = Number(v2 ? read('memory', 'memory.max') : read('memory', 'memory.limit_in_bytes'));
    assert.ok(mem > guestMiB * 1048576 && mem <= (guestMiB + 512) * 1048576, `memory limit ${mem} follows -m`);
    assert.equal(read('pids', 'pids.max'), '256');
    const [quota, period] = v2 ? read('cpu', 'cpu.max').split(' ').map(Number) : [Number(read('cpu', 'cpu.cfs_quota_us')), Number(read('cpu', 'cpu.cfs_period_us'))];
    assert.equal(quota! / period!, 1, 'CPU quota: one vCPU');
    const dir = dirOf('memory');
    await d.run(['rm', '-f', id]);
    await until('the VM cgroup to be removed', () => !fs.existsSync(dir), 10_000);
  });

  it("a second launch in a run directory keeps its cgroup and share when the first launch's late release runs", { skip: process.getuid?.() !== 0 }, () => {
    const runDir = fs.mkdtempSync('/tmp/hb-jail-rel-');
    const share = path.join(runDir, 'share');
    fs.mkdirSync(share);
    const spec: VmSpec = { runDir, shape: { assets: { kernel: '/k', initrd: '/i', fingerprint: 'f' }, accel: 'tcg', memoryMiB: 128, cpus: 1 }, sharePaths: [share] };
    const isMount = (p: string) => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);
    const groupDir = (name: string) => (fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? `/sys/fs/cgroup/hyperbox/${name}` : `/sys/fs/cgroup/pids/hyperbox/${name}`);
    try {
      // A clone that failed (first) and the cold boot that replaces it (second), same run directory.
      const first = jailedCommand(spec, ['qemu-system-x86_64']).record!;
      const second = jailedCommand(spec, ['qemu-system-x86_64']).record!;
      assert.notEqual(first.cgroup, second.cgroup);
      releaseJail(runDir, first);
      assert.ok(isMount(share), 'the share stays a shared mount for the second VM');
      assert.ok(fs.existsSync(groupDir(second.cgroup!)), "the second launch's cgroup stays");
      assert.equal(fs.existsSync(groupDir(first.cgroup!)), false);
      releaseJail(runDir, second);
      assert.equal(isMount(share), false);
      assert.equal(fs.existsSync(groupDir(second.cgroup!)), false);
    } finally {
      if (isMount(share)) spawnSync('umount', ['-R', share]);
      fs.rmSync(runDir, { recursive: true, force: true });
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
