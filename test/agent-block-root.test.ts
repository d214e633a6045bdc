/**
 * Container roots on block devices, at the QEMU level: the test builds a
 * read-only image disk (erofs if the guest kernel has it, and ext4) from the
 * busybox rootfs and an empty ext4 upper disk, boots the agent with both as
 * virtio-blk devices (found by serial, in either order), and drives MOUNT_ROOT
 * with BLOCK_LOWER/BLOCK_UPPER, BIND and READONLY over the agent channel. What
 * a container writes lands in the upper disk, survives a second boot, and the
 * disk is clean after POWEROFF.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentConnection } from '../src/agent/connection.js';
import { locateGuestAssets } from '../src/vm/assets.js';
import { QEMU_BINARY, qemuArgs, vmPaths } from '../src/vm/qemu/args.js';
import { busyboxTar } from './helpers/daemon.js';

const accel = process.env.HYPERBOX_ACCEL === 'kvm' ? 'kvm' : 'tcg';
const assets = locateGuestAssets();

/** Does the guest kernel have erofs? Its config sits next to the cached vmlinux. */
function kernelHasErofs(): boolean {
  try {
    const config = fs.readFileSync(path.join(path.dirname(fs.realpathSync(assets.kernel)), 'config'), 'utf8');
    return /^CONFIG_EROFS_FS=y$/m.test(config);
  } catch {
    return false;
  }
}

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Vm {
  qemu: ChildProcess;
  conn: AgentConnection;
  exited: Promise<number | null>;
  runDir: string;
}

async function boot(runDir: string, share: string, drives: Array<{ id: string; file: string; serial: string; readonly?: boolean }>): Promise<Vm> {
  fs.mkdirSync(runDir, { recursive: true });
  const args = qemuArgs({ runDir, shape: { assets, accel, memoryMiB: 256, cpus: 1 }, sharePaths: [share] });
  for (const d of drives) {
    args.push(
      '-drive', `if=none,id=${d.id},file=${d.file},format=raw${d.readonly ? ',readonly=on' : ''}`,
      '-device', `virtio-blk-device,drive=${d.id},serial=${d.serial}`,
    );
  }
  const qemu = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'ignore', fs.openSync(vmPaths(runDir).qemuLog, 'w')] });
  const exited = new Promise<number | null>((r) => qemu.once('exit', (code) => r(code)));
  const conn = await AgentConnection.connect(vmPaths(runDir).control, { timeoutMs: 60_000 });
  await conn.configure({ hostname: 'blockbox', seed: crypto.randomBytes(32) });
  return { qemu, conn, exited, runDir };
}

async function run(vm: Vm, script: string, root = 'c1', user = ''): Promise<{ code: number; out: string }> {
  const proc = await vm.conn.start({ root, args: ['sh', '-c', script], env: ['PATH=/bin:/sbin:/usr/bin:/usr/sbin'], cwd: '/', user, tty: false, stdin: false });
  let out = '';
  proc.on('stdout', (b: Buffer) => (out += b.toString()));
  proc.on('stderr', (b: Buffer) => (out += b.toString()));
  const code = new Promise<number>((r) => proc.on('exit', (st) => r(st.code)));
  proc.release();
  return { code: await code, out };
}

/**
 * POWEROFF, then the guest kernel must power down (its last words, "reboot:
 * System halted", come after every disk was flushed). A microvm without ACPI
 * halts rather than exits (QEMU waited for a 30 s timer before), so QEMU is
 * ended here once the guest said so.
 */
async function powerOff(vm: Vm): Promise<void> {
  vm.conn.poweroff();
  // Normally seconds; the deadline only ends a guest that never halts (a 3x slower machine must not hit it).
  const deadline = Date.now() + 120_000;
  const consoleFile = vmPaths(vm.runDir).console;
  while (vm.qemu.exitCode === null && Date.now() < deadline && !/reboot: (Power down|System halted)/.test(fs.readFileSync(consoleFile, 'utf8'))) await new Promise((r) => setTimeout(r, 100));
  vm.qemu.kill('SIGKILL');
  await vm.exited;
  vm.conn.close();
}

function consoleLog(vm: Vm): string {
  try {
    return fs.readFileSync(vmPaths(vm.runDir).console, 'utf8').split('\n').filter((l) => l.includes('hyperbox-agent')).join('\n');
  } catch {
    return '';
  }
}

describe('agent: container root on virtio-blk disks (overlay of a read-only image and an ext4 upper)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbblk-'));
  const vms: Vm[] = [];
  after(() => {
    for (const vm of vms) if (vm.qemu.exitCode === null) vm.qemu.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // With erofs in the guest kernel, the first boot's lower is erofs and the
  // second's an ext4 image of the same tree (both kinds the agent accepts; the
  // upper outlives a rebuilt image). Without, both boots use the ext4 one.
  const erofs = kernelHasErofs() && have('mkfs.erofs');
  const lowerExt4 = path.join(dir, 'lower.ext4');
  const lower = erofs ? path.join(dir, 'lower.erofs') : lowerExt4;
  const upper = path.join(dir, 'upper.ext4');
  const share = path.join(dir, 'share');

  it(`builds the disks (first lower: ${erofs ? 'erofs' : 'ext4, the guest kernel has no erofs'})`, () => {
    const rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(rootfs);
    execFileSync('tar', ['-xf', busyboxTar, '-C', rootfs, '--numeric-owner']);
    // Nothing prepared by the host: the agent creates the mount points and /etc files.
    for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp']) fs.rmSync(path.join(rootfs, d), { recursive: true, force: true });
    fs.writeFileSync(path.join(rootfs, 'from-lower'), 'image content\n');
    fs.writeFileSync(path.join(rootfs, 'to-delete'), 'gone after rm\n');
    fs.writeFileSync(path.join(rootfs, 'to-append'), 'line 1\n');
    if (erofs) execFileSync('mkfs.erofs', ['--quiet', lower, rootfs]);
    fs.writeFileSync(lowerExt4, '');
    fs.truncateSync(lowerExt4, 64 << 20);
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', rootfs, lowerExt4]);
    fs.writeFileSync(upper, '');
    fs.truncateSync(upper, 128 << 20);
    execFileSync('mkfs.ext4', ['-q', '-F', upper]);
    fs.mkdirSync(path.join(share, 'vol', 'inner'), { recursive: true });
    fs.writeFileSync(path.join(share, 'vol', 'hello'), 'from the share\n');
    fs.mkdirSync(path.join(share, 'vol2'));
    fs.writeFileSync(path.join(share, 'vol2', 'nested'), 'nested bind\n');
    fs.writeFileSync(path.join(share, 'conf'), 'a bound file\n');
    // A 9p root in the same share (pod style, SUBDIR) for BIND and READONLY there.
    fs.mkdirSync(path.join(share, 'podroot'));
    execFileSync('tar', ['-xf', busyboxTar, '-C', path.join(share, 'podroot'), '--numeric-owner']);
  });

  it('first boot: lower visible, writes go to the upper, special files, binds', async (t) => {
    const vm = await boot(path.join(dir, 'run1'), share, [
      { id: 'lower', file: lower, serial: 'hb-lower', readonly: true },
      { id: 'upper', file: upper, serial: 'hb-upper' },
    ]);
    vms.push(vm);
    try {
      await vm.conn.mountRoot('hbroot0', 'c1', undefined, ['/tmp'], {
        block: { lower: 'hb-lower', upper: 'hb-upper' },
        hosts: ['10.1.2.3 db'],
        // children first on purpose: the agent mounts parents first
        binds: [
          { source: 'vol2', dest: '/data/sub' },
          { source: 'vol', dest: '/data' },
          { source: 'conf', dest: '/etc/app.conf', readonly: true },
        ],
      });
      const script = [
        'set -e',
        'cat /from-lower',
        'echo written > /from-upper && sync',
        'echo line 2 >> /to-append',
        'rm /to-delete',
        'mkfifo /fifo && test -p /fifo && echo fifo ok',
        'mknod /mynull c 1 3 && echo discard > /mynull && test -c /mynull && echo mknod ok',
        'ln /from-upper /hardlink && test "$(stat -c %h /from-upper)" = 2 && echo hardlink ok',
        'chown 1000:1001 /from-upper && stat -c "%u:%g" /from-upper',
        'cp /bin/busybox /suid && chmod 4755 /suid && stat -c %a /suid',
        // Waits for syslogd's socket and its line (bounded: 30 s), not for a second each: a busy guest is slower.
        'mkdir /sockdir && ln -s /sockdir/log /dev/log && (syslogd -n -O /tmp/messages & pid=$!; i=0; until test -S /sockdir/log || [ $i = 300 ]; do i=$((i+1)); sleep 0.1; done; logger via-socket; i=0; until grep -q via-socket /tmp/messages 2>/dev/null || [ $i = 300 ]; do i=$((i+1)); sleep 0.1; done; test -S /sockdir/log && echo socket ok; grep -c via-socket /tmp/messages; kill $pid) || true',
        'cat /etc/hostname; grep db /etc/hosts',
        'cat /data/hello /data/sub/nested /etc/app.conf',
        'if (echo x > /etc/app.conf) 2>/dev/null; then echo app.conf writable; else echo app.conf ro; fi', // the subshell: a failed > reports before a 2>/dev/null after it applies
        'echo into-share > /data/written',
        'grep " / " /proc/mounts | grep -c nosuid || true',
      ].join('\n');
      const { code, out } = await run(vm, script);
      t.diagnostic(out);
      assert.equal(code, 0, `${out}\n${consoleLog(vm)}`);
      const lines = out.split('\n');
      assert.equal(lines[0], 'image content');
      for (const l of ['fifo ok', 'mknod ok', 'hardlink ok', '1000:1001', '4755', 'socket ok', 'blockbox', '10.1.2.3\tdb', 'from the share', 'nested bind', 'a bound file', 'app.conf ro'])
        assert.ok(lines.includes(l), `missing "${l}" in:\n${out}`);
      assert.equal(lines.at(-2), '0', 'the root is not nosuid');
      assert.equal(fs.readFileSync(path.join(share, 'vol', 'written'), 'utf8'), 'into-share\n');
      // A main process's exit syncs its disk: the upper holds the file now.
      const dump = execFileSync('debugfs', ['-R', 'cat /upper/from-upper', upper], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      assert.equal(dump, 'written\n');
      // Still running at POWEROFF, with a file of the upper open for writing:
      // the agent kills it, then unmounts.
      const busy = await vm.conn.start({ root: 'c1', args: ['sh', '-c', 'echo held > /busy; exec 3>>/busy; echo open; exec sleep 1000'], env: ['PATH=/bin'], cwd: '/', user: '', tty: false, stdin: false });
      const open = new Promise<void>((r) => busy.on('stdout', (b: Buffer) => b.toString().includes('open') && r()));
      busy.release();
      await open; // the file is written and held open (a fixed second was too short on a busy machine)
    } finally {
      await powerOff(vm);
    }
    assertClean(upper);
    assert.equal(execFileSync('debugfs', ['-R', 'cat /upper/busy', upper], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), 'held\n');
  });

  it('second boot (disks in the other order, an ext4 lower): the upper is found again; READONLY refuses writes', async (t) => {
    const vm = await boot(path.join(dir, 'run2'), share, [
      { id: 'upper', file: upper, serial: 'hb-upper' },
      { id: 'lower', file: lowerExt4, serial: 'hb-lower', readonly: true },
    ]);
    vms.push(vm);
    try {
      await assert.rejects(vm.conn.mountRoot('', 'bad', undefined, [], { block: { lower: 'nope', upper: 'hb-upper' } }), /nope: no virtio-blk disk/);
      await assert.rejects(vm.conn.mountRoot('', 'bad', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-lower' } }), /serials/);
      await vm.conn.mountRoot('', 'c1', undefined, ['/tmp'], { block: { lower: 'hb-lower', upper: 'hb-upper' }, readonly: true, isolate: true });
      await assert.rejects(vm.conn.mountRoot('', 'c1', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper' } }), /already mounted/);
      await assert.rejects(vm.conn.mountRoot('', 'c2', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper' } }), /in use by root c1/);
      const script = [
        'cat /from-upper /to-append',
        'test -e /to-delete && echo to-delete still there',
        'test -p /fifo && echo fifo ok',
        'test -c /mynull && echo mknod ok',
        'stat -c "%h %u:%g" /from-upper; stat -c %a /suid',
        'test -S /sockdir/log && echo socket ok',
        'if echo x > /new 2>/tmp/err; then echo wrote; else cat /tmp/err; fi',
        'echo tmp ok > /tmp/x && cat /tmp/x',
        'cat /etc/hostname',
      ].join('\n');
      const { code, out } = await run(vm, script);
      t.diagnostic(out);
      assert.equal(code, 0, `${out}\n${consoleLog(vm)}`);
      const lines = out.split('\n');
      assert.deepEqual(lines.slice(0, 3), ['written', 'line 1', 'line 2']);
      for (const l of ['fifo ok', 'mknod ok', '2 1000:1001', '4755', 'socket ok', 'tmp ok', 'blockbox'])
        assert.ok(lines.includes(l), `missing "${l}" in:\n${out}`);
      assert.ok(!lines.includes('to-delete still there'));
      assert.ok(!lines.includes('wrote'));
      assert.match(out, /Read-only file system/);

      // A 9p root (SUBDIR of the share) with a read-only BIND and READONLY.
      await vm.conn.mountRoot('hbroot0', 'p1', 'podroot', [], { binds: [{ source: 'vol', dest: '/mnt/vol', readonly: true }], readonly: true });
      const pod = await run(vm, 'cat /mnt/vol/hello; touch /mnt/vol/x; touch /y; echo done', 'p1');
      t.diagnostic(pod.out);
      assert.match(pod.out, /^from the share\n/);
      assert.match(pod.out, /touch: \/mnt\/vol\/x: Read-only file system/);
      assert.match(pod.out, /touch: \/y: Read-only file system/);
      assert.ok(!fs.existsSync(path.join(share, 'vol', 'x')) && !fs.existsSync(path.join(share, 'podroot', 'y')));
      await assert.rejects(vm.conn.mountRoot('hbroot0', 'p2', undefined, [], { binds: [{ source: 'vol', dest: '/v' }] }), /bind without a subdir/);
    } finally {
      await powerOff(vm);
    }
    assertClean(upper);
  });

  it('an upper mounted ahead (PREMOUNT, a template\'s step) serves only a root that says PREMOUNTED; without one, PREMOUNTED mounts the disk', async (t) => {
    const fresh = path.join(dir, 'fresh.ext4');
    fs.writeFileSync(fresh, '');
    fs.truncateSync(fresh, 128 << 20);
    execFileSync('mkfs.ext4', ['-q', '-F', fresh]);
    const disks = [
      { id: 'lower', file: lower, serial: 'hb-lower', readonly: true },
      { id: 'upper', file: fresh, serial: 'hb-upper' },
    ];
    const vm = await boot(path.join(dir, 'run3'), share, disks);
    vms.push(vm);
    try {
      await assert.rejects(vm.conn.premountUpper('nope'), /nope: No such device/);
      await vm.conn.premountUpper('hb-upper');
      await assert.rejects(vm.conn.premountUpper('hb-upper'), /already mounted ahead/);
      // A root whose disk is not the copy made for it must not get that mount.
      await assert.rejects(vm.conn.mountRoot('', 'c1', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper' } }), /mounted ahead for a new root/);
      await vm.conn.mountRoot('', 'c1', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper', premounted: true } });
      const { code, out } = await run(vm, 'cat /from-lower; echo ahead > /from-upper');
      t.diagnostic(out);
      assert.equal(code, 0, `${out}\n${consoleLog(vm)}`);
      assert.match(out, /^image content\n/);
    } finally {
      await powerOff(vm);
    }
    // The moved mount is the root's: unmounted clean at POWEROFF, the write in upper/.
    assertClean(fresh);
    assert.equal(execFileSync('debugfs', ['-R', 'cat /upper/from-upper', fresh], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), 'ahead\n');
    // A cold boot has nothing mounted ahead: PREMOUNTED then mounts the disk as usual.
    const cold = await boot(path.join(dir, 'run4'), share, disks);
    vms.push(cold);
    try {
      await cold.conn.mountRoot('', 'c1', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper', premounted: true } });
      const { code, out } = await run(cold, 'cat /from-upper');
      assert.equal(code, 0, `${out}\n${consoleLog(cold)}`);
      assert.equal(out, 'ahead\n');
    } finally {
      await powerOff(cold);
    }
    assertClean(fresh);
  });
});

/** POWEROFF unmounted the disk: its superblock says clean, no journal to replay, and a read-only fsck agrees. */
function assertClean(image: string): void {
  const sb = execFileSync('dumpe2fs', ['-h', image], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  assert.match(sb, /^Filesystem state:\s+clean$/m);
  assert.doesNotMatch(sb, /needs_recovery/);
  execFileSync('e2fsck', ['-fn', image], { stdio: 'ignore' });
}
