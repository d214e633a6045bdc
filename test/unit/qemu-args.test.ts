/** The QEMU command line: machine, memory file sharing, device line, shares and the NIC's backend. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clockArgs, netdevArgs, QEMU_LAYOUT, qemuArgs, USER_NET, type VmSpec } from '../../src/vm/qemu/args.js';

const assets = { kernel: '/k/vmlinux', initrd: '/k/initrd.img', fingerprint: 'fp' };
const spec = (over: Partial<VmSpec> = {}): VmSpec => ({
  runDir: '/run/hb/vm1',
  shape: { assets, accel: 'kvm', memoryMiB: 512, cpus: 2 },
  sharePaths: ['/data/root'],
  ...over,
});

/** The value following FLAG (each occurrence). */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

describe('qemuArgs', () => {
  it('boots the microvm machine with the shape\'s accelerator, memory, vCPUs and the guest assets', () => {
    const a = qemuArgs(spec());
    assert.deepEqual(values(a, '-M'), ['microvm,x-option-roms=off,rtc=off,acpi=off,isa-serial=on']);
    assert.deepEqual(values(a, '-accel'), ['kvm']);
    assert.deepEqual(values(a, '-cpu'), ['host']);
    assert.deepEqual(values(a, '-m'), ['512M']);
    assert.deepEqual(values(a, '-smp'), ['2']);
    assert.deepEqual(values(a, '-kernel'), ['/k/vmlinux']);
    assert.deepEqual(values(a, '-initrd'), ['/k/initrd.img']);
    assert.match(values(a, '-append')[0]!, /panic=-1/, 'a dead agent ends QEMU');
    for (const f of ['-nodefaults', '-no-user-config', '-nographic', '-no-reboot']) assert.ok(a.includes(f), f);
    const tcg = qemuArgs(spec({ shape: { assets, accel: 'tcg', memoryMiB: 128, cpus: 1 } }));
    assert.deepEqual(values(tcg, '-accel'), ['tcg,tb-size=64']);
    assert.deepEqual(values(tcg, '-cpu'), ['max']);
    assert.deepEqual(values(tcg, '-m'), ['128M']);
  });

  it('puts sockets and logs in the run directory', () => {
    const a = qemuArgs(spec());
    assert.deepEqual(values(a, '-serial'), ['file:/run/hb/vm1/console.log']);
    assert.deepEqual(values(a, '-qmp'), ['unix:/run/hb/vm1/qmp.sock,server=on,wait=off']);
    assert.deepEqual(values(a, '-chardev'), ['socket,id=ctl,path=/run/hb/vm1/ctl.sock,server=on,wait=off', 'socket,id=events,path=/run/hb/vm1/events.sock,server=on,wait=off']);
    assert.deepEqual(values(a, '-mon'), ['chardev=events,mode=control'], 'a second QMP monitor, for events');
  });

  it('has the same device line for every VM: clones must match their template', () => {
    const devices = (s: VmSpec) => values(qemuArgs(s), '-device');
    const plain = devices(spec());
    assert.deepEqual(plain, [
      'virtio-serial-device,max_ports=2',
      `virtserialport,chardev=ctl,name=${QEMU_LAYOUT.control.port}`,
      'virtio-rng-device,rng=rng0',
      'virtio-net-device,netdev=net0,mac=52:54:00:12:34:56',
      `virtio-9p-device,fsdev=fs0,mount_tag=${QEMU_LAYOUT.shares[0]!.tag}`,
    ]);
    const clone = spec({ memoryFile: { path: '/dev/shm/t.mem', shared: false }, incoming: true, net: { forwards: [{ proto: 'tcp', hostIp: '', hostPort: 8080, guestPort: 80 }] } });
    assert.deepEqual(devices(clone), plain, 'memory file, incoming and forwards do not change devices');
    assert.deepEqual(devices(spec({ net: { forwards: [], tap: 'tap0' } })), plain, 'nor does a TAP backend');
  });

  it('pauses the VM on a full host filesystem under the writable disk (werror=enospc), never on the read-only one', () => {
    const a = qemuArgs(spec({ shape: { assets, accel: 'kvm', memoryMiB: 512, cpus: 2, root: 'disks' }, sharePaths: [], disks: { lower: '/d/image.erofs', upper: '/d/disk.ext4' } }));
    const blk = values(a, '-device').filter((d) => d.startsWith('virtio-blk-device'));
    assert.equal(blk.length, 2);
    assert.match(blk.find((d) => d.includes('drive=upper'))!, /,werror=enospc,rerror=report$/);
    assert.match(blk.find((d) => d.includes('drive=lower'))!, /,werror=report,rerror=report$/);
  });

  it('maps guest RAM from a file: shared for a template, private (copy-on-write) for a clone', () => {
    const template = qemuArgs(spec({ memoryFile: { path: '/dev/shm/t.mem', shared: true } }));
    assert.deepEqual(values(template, '-M'), ['microvm,x-option-roms=off,rtc=off,acpi=off,isa-serial=on,memory-backend=mem']);
    assert.ok(values(template, '-object').includes('memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.mem,share=on'));
    const clone = qemuArgs(spec({ memoryFile: { path: '/dev/shm/t.mem', shared: false } }));
    assert.ok(values(clone, '-object').includes('memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.mem,share=off'));
    const plain = qemuArgs(spec());
    assert.ok(!values(plain, '-object').some((o) => o.startsWith('memory-backend')), 'no memory file by default');
    assert.ok(!values(plain, '-M')[0]!.includes('memory-backend'));
  });

  it('waits for an incoming migration only when asked', () => {
    assert.deepEqual(values(qemuArgs(spec({ incoming: true })), '-incoming'), ['defer']);
    assert.deepEqual(values(qemuArgs(spec()), '-incoming'), []);
  });

  it('shares each directory over 9p with the layout\'s tag, and refuses more shares than the layout has', () => {
    const a = qemuArgs(spec());
    assert.deepEqual(values(a, '-fsdev'), ['local,id=fs0,path=/data/root,security_model=passthrough,multidevs=remap']);
    const none = qemuArgs(spec({ sharePaths: [] }));
    assert.deepEqual(values(none, '-fsdev'), [], 'the KVM probe boots without shares');
    assert.throws(() => qemuArgs(spec({ sharePaths: ['/a', '/b'] })), /the device layout has no share #1/);
  });
});

describe('netdevArgs', () => {
  it('gives a user-mode network with QEMU\'s addresses spelled out, no IPv6', () => {
    assert.deepEqual(netdevArgs(undefined), ['-netdev', `user,id=net0,net=${USER_NET.subnet},host=${USER_NET.gateway},dns=${USER_NET.dns},dhcpstart=${USER_NET.guest},ipv6=off`]);
    assert.deepEqual(netdevArgs({ forwards: [] }), netdevArgs(undefined));
    assert.deepEqual(USER_NET, { subnet: '10.0.2.0/24', guest: '10.0.2.15', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3' });
  });

  it('restricts the network for --network none', () => {
    const [, arg] = netdevArgs({ forwards: [], restrict: true });
    assert.match(arg!, /,restrict=on$/);
  });

  it('forwards published ports to the guest (hostfwd), tcp and udp, any or one host address', () => {
    const [, arg] = netdevArgs({
      forwards: [
        { proto: 'tcp', hostIp: '', hostPort: 8080, guestPort: 80 },
        { proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, guestPort: 53 },
      ],
    });
    assert.deepEqual(arg!.split(',').filter((p) => p.startsWith('hostfwd=')), ['hostfwd=tcp::8080-10.0.2.15:80', 'hostfwd=udp:127.0.0.1:5353-10.0.2.15:53']);
  });

  it('refuses a host address that could inject QEMU options', () => {
    for (const hostIp of ['127.0.0.1,restrict=off', 'localhost', '1.2.3.4 ', '::1]']) {
      assert.throws(() => netdevArgs({ forwards: [{ proto: 'tcp', hostIp, hostPort: 1, guestPort: 1 }] }), /bad host address/, hostIp);
    }
  });

  it('uses a TAP device for a bridge network, with the idle user netdev a clone\'s state needs', () => {
    assert.deepEqual(netdevArgs({ forwards: [], tap: 'hta1b2c3d4e5f6' }), [
      '-netdev', 'tap,id=net0,ifname=hta1b2c3d4e5f6,script=no,downscript=no',
      '-netdev', 'user,id=slirp0,restrict=on,ipv6=off',
    ]);
  });

  it('refuses TAP names Linux would not take or that could inject options', () => {
    for (const tap of ['a'.repeat(16), 'tap0,script=/bin/sh', 'tap 0', 'tap/0', 'tap.0']) {
      assert.throws(() => netdevArgs({ forwards: [], tap }), /bad TAP name/, JSON.stringify(tap));
    }
    assert.doesNotThrow(() => netdevArgs({ forwards: [], tap: 'a'.repeat(15) }), '15 characters is the limit');
  });
});

describe('guest clock arguments', () => {
  it('gives the TSC frequency only under TCG and only when the host knows it', () => {
    const known = 'flags\t\t: fpu constant_tsc nonstop_tsc tsc_known_freq\ncpu MHz\t\t: 2596.122\n';
    assert.deepEqual(clockArgs('kvm', known), []);
    assert.deepEqual(clockArgs('tcg', 'flags\t\t: fpu tsc\ncpu MHz\t\t: 2596.122\n'), []);
    assert.deepEqual(clockArgs('tcg', known), ['tsc_early_khz=2596122', 'tsc=reliable']);
  });
});
