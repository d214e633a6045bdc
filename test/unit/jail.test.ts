/** The QEMU jail's bubblewrap line and its cgroup limits (pure parts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VmSpec } from '../../src/vm/qemu/args.js';
import { limitsFor, QEMU_MAX_TASKS, QEMU_OVERHEAD_MIB } from '../../src/vm/qemu/cgroup.js';
import { jailArgs, QEMU_CAPABILITIES } from '../../src/vm/qemu/jail.js';

const assets = { kernel: '/k/vmlinux', initrd: '/k/initrd.img', fingerprint: 'fp' };
const spec = (over: Partial<VmSpec> = {}): VmSpec => ({
  runDir: '/run/hb/vm1',
  shape: { assets, accel: 'tcg', memoryMiB: 512, cpus: 2 },
  sharePaths: ['/data/root'],
  ...over,
});

/** The (source, dest) pairs of every occurrence of FLAG. */
function pairs(args: string[], flag: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  args.forEach((a, i) => a === flag && out.push([args[i + 1]!, args[i + 2]!]));
  return out;
}

describe('QEMU jail', () => {
  it('binds only the VM own files writable, the system read-only, and nothing of the data root else', () => {
    const args = jailArgs(spec({ memoryFile: { path: '/dev/shm/hb-x/t1/ram', shared: false } }), '/usr/bin/qemu-system-x86_64');
    assert.deepEqual(pairs(args, '--bind'), [
      ['/run/hb/vm1', '/run/hb/vm1'],
      ['/data/root', '/data/root'],
      ['/dev/shm/hb-x/t1', '/dev/shm/hb-x/t1'],
    ]);
    const ro = pairs(args, '--ro-bind').map(([src]) => src);
    assert.ok(ro.includes('/k/vmlinux') && ro.includes('/k/initrd.img'));
    assert.ok(ro.every((p) => p.startsWith('/usr') || p.startsWith('/lib') || p.startsWith('/bin') || p.startsWith('/sbin') || p.startsWith('/k/')), ro.join(' '));
    assert.deepEqual(pairs(args, '--dev-bind'), [], 'no host device without a TAP or KVM');
    for (const f of ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--new-session', '--clearenv']) assert.ok(args.includes(f), f);
    assert.ok(!args.includes('--die-with-parent'), 'VMs outlive the daemon (live restore)');
  });

  it('gives /dev/net/tun only to a TAP VM and /dev/kvm only under KVM', () => {
    const tap = jailArgs(spec({ net: { forwards: [], tap: 'hb0' } }), '/usr/bin/qemu');
    assert.deepEqual(pairs(tap, '--dev-bind'), [['/dev/net/tun', '/dev/net/tun']]);
    const kvm = jailArgs(spec({ shape: { assets, accel: 'kvm', memoryMiB: 512, cpus: 1 } }), '/usr/bin/qemu');
    assert.deepEqual(pairs(kvm, '--dev-bind'), [['/dev/kvm', '/dev/kvm']]);
  });

  it('keeps only the named capabilities (and CAP_SETPCAP for setpriv to cut the bounding set)', () => {
    const args = jailArgs(spec(), '/usr/bin/qemu');
    const added = args.flatMap((a, i) => (a === '--cap-add' ? [args[i + 1]] : []));
    assert.deepEqual(added.sort(), [...QEMU_CAPABILITIES, 'setpcap'].map((c) => `CAP_${c.toUpperCase()}`).sort());
    assert.ok(args.indexOf('--cap-drop') < args.indexOf('--cap-add'));
  });

  it('binds a QEMU binary outside /usr read-only', () => {
    assert.deepEqual(pairs(jailArgs(spec(), '/opt/qemu/bin/qemu'), '--ro-bind').find(([s]) => s.startsWith('/opt')), ['/opt/qemu/bin/qemu', '/opt/qemu/bin/qemu']);
  });

  it('derives cgroup limits from the guest shape', () => {
    const l = limitsFor({ memoryMiB: 512, cpus: 2 });
    assert.equal(l.memoryBytes, (512 + QEMU_OVERHEAD_MIB) * 1048576);
    assert.equal(l.pids, QEMU_MAX_TASKS);
    assert.equal(l.cpuQuotaUs / l.cpuPeriodUs, 2);
  });
});

describe('passt (the user-mode network)', () => {
  it('never maps the gateway to the host, forwards published ports and DNS, and nothing else', async () => {
    const { passtArgs, PASST_FD } = await import('../../src/vm/qemu/passt.js');
    const args = passtArgs({ forwards: [
      { proto: 'tcp', hostIp: '', hostPort: 8080, guestPort: 80 },
      { proto: 'tcp', hostIp: '127.0.0.1', hostPort: 8443, guestPort: 443 },
      { proto: 'udp', hostIp: '0.0.0.0', hostPort: 5353, guestPort: 53 },
    ] });
    assert.ok(args.includes('--no-map-gw'));
    assert.deepEqual(args.slice(args.indexOf('--fd'), args.indexOf('--fd') + 2), ['--fd', String(PASST_FD)]);
    const after = (flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
    assert.deepEqual(after('--tcp-ports'), ['8080:80', '127.0.0.1/8443:443']);
    assert.deepEqual(after('--udp-ports'), ['5353:53']);
    assert.deepEqual(after('--dns-forward'), ['10.0.2.3']);
    assert.deepEqual(passtArgs({ forwards: [] }).filter((a, i, all) => all[i - 1] === '--tcp-ports' || all[i - 1] === '--udp-ports'), ['none', 'none']);
    assert.throws(() => passtArgs({ forwards: [{ proto: 'tcp', hostIp: '1.2.3.4,evil', hostPort: 1, guestPort: 1 }] }), /bad host address/);
  });
});
