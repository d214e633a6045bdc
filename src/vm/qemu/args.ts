/**
 * The QEMU command line of a VM: the `microvm` machine with virtio-mmio devices
 * only (the layout below, as data), guest RAM optionally in a file (templates
 * and clones), and the NIC's backend (user-mode network or a TAP). Pure.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BuiltinNetwork, DeviceLayout, GuestShape, NetSpec, RootDisks } from '../driver.js';

/** The device line qemuArgs builds. Templates are keyed by it. */
export const QEMU_LAYOUT: Readonly<DeviceLayout> = {
  revision: 3, // 2: virtio-net NIC on a user-mode netdev; 3: the guest is given the TSC frequency under TCG
  console: 'serial',
  control: { transport: 'virtio-serial', port: 'hyperbox.0' },
  rng: 'virtio-rng',
  nic: 'virtio-net',
  shares: [{ tag: 'hbroot0', transport: 'virtio-9p' }],
};

const DISKS: NonNullable<DeviceLayout['disks']> = [
  { serial: 'hb-lower', role: 'lower', transport: 'virtio-blk' },
  { serial: 'hb-upper', role: 'upper', transport: 'virtio-blk' },
];

/** The layout of SHAPE: the default one, or with the root's disks (and a share for binds, or none). */
export function layoutFor(shape: Pick<GuestShape, 'root'>): DeviceLayout {
  switch (shape.root ?? 'share') {
    case 'share':
      return QEMU_LAYOUT;
    case 'disks':
      return { ...QEMU_LAYOUT, shares: [], disks: DISKS };
    case 'disks+share':
      return { ...QEMU_LAYOUT, disks: DISKS };
  }
}

/** Addresses of QEMU's user-mode network (its defaults, spelled out). */
export const USER_NET = { subnet: '10.0.2.0/24', guest: '10.0.2.15', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

/** `-netdev` arguments: the NIC's backend (net0), plus what a clone's state needs. */
export function netdevArgs(net: NetSpec | undefined, passtFd?: number): string[] {
  // A template's migration stream carries a slirp section: a clone restores it
  // into this idle, restricted user netdev, while its NIC uses a TAP or passt.
  const idleSlirp = ['-netdev', 'user,id=slirp0,restrict=on,ipv6=off'];
  if (net?.tap) {
    if (!/^[a-zA-Z0-9_-]{1,15}$/.test(net.tap)) throw new Error(`bad TAP name ${net.tap}`);
    return ['-netdev', `tap,id=net0,ifname=${net.tap},script=no,downscript=no`, ...idleSlirp];
  }
  if (passtFd !== undefined) return ['-netdev', `stream,id=net0,server=off,addr.type=fd,addr.str=${passtFd}`, ...idleSlirp];
  let arg = `user,id=net0,net=${USER_NET.subnet},host=${USER_NET.gateway},dns=${USER_NET.dns},dhcpstart=${USER_NET.guest},ipv6=off`;
  if (net?.restrict) arg += ',restrict=on';
  for (const f of net?.forwards ?? []) {
    if (!/^[0-9a-fA-F.:]*$/.test(f.hostIp)) throw new Error(`bad host address ${f.hostIp}`);
    arg += `,hostfwd=${f.proto}:${f.hostIp}:${f.hostPort}-${USER_NET.guest}:${f.guestPort}`;
  }
  return ['-netdev', arg];
}

export const USER_NET_INFO: BuiltinNetwork = { ...USER_NET };

export interface VmSpec {
  /** Run directory for this VM's sockets and logs (kept short: unix socket paths are limited to 107 bytes). */
  runDir: string;
  shape: GuestShape;
  /** Host directories for the layout's shares, in order (an empty list: no shares, e.g. the KVM probe). */
  sharePaths: string[];
  /** Guest RAM in a file: shared for a template (the file becomes its memory image),
   * private for a clone (copy-on-write pages over the template's file). */
  memoryFile?: { path: string; shared: boolean };
  /** Start paused, waiting for `migrate-incoming` (clones). */
  incoming?: boolean;
  /** Stay paused after an incoming migration until `cont` (-S: a live migration's disk must be complete first). */
  startPaused?: boolean;
  /** Guest RAM as the anonymous backend `mem` (a live migration into a clone's RAM layout). */
  ramBackend?: boolean;
  /** The NIC's backend (forwards differ per VM; the NIC is always present). */
  net?: NetSpec;
  /** The built-in network through passt (passt.ts): QEMU's fd carrying its socket. */
  passtFd?: number;
  /** Files behind the layout's disks (a template's are placeholders). */
  disks?: RootDisks;
  /** A directory under RUNDIR that a jailed QEMU sees read-only (a pool VM's image filesystem goes there, disks.ts). */
  readOnlyDir?: string;
}

/**
 * Under TCG the guest's TSC runs at the host's TSC rate, but the guest cannot
 * calibrate it (microvm has no HPET or PM timer, and the PIT is too noisy under
 * emulation): it marks the TSC unstable and runs on refined-jiffies, whose tick
 * never stops, so every idle VM (and every clone of its template) burns CPU.
 * Told the frequency, the guest keeps the TSC and idles tickless. Only when the
 * host's TSC is constant and its frequency known (then /proc/cpuinfo's "cpu MHz"
 * is that frequency); with KVM the guest has kvm-clock.
 */
export function clockArgs(accel: GuestShape['accel'], cpuinfo = readCpuinfo()): string[] {
  if (accel !== 'tcg' || !/^flags\s*:.*\bconstant_tsc\b.*\btsc_known_freq\b/m.test(cpuinfo)) return [];
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  if (!Number.isFinite(mhz) || mhz < 100) return [];
  return [`tsc_early_khz=${Math.round(mhz * 1000)}`, 'tsc=reliable'];
}

/** /proc/cpuinfo, read once: qemuArgs runs on every VM start (the hot path). */
let cpuinfo: string | undefined;
function readCpuinfo(): string {
  if (cpuinfo === undefined) {
    try {
      cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      cpuinfo = '';
    }
  }
  return cpuinfo;
}

export const QEMU_BINARY = process.env.HYPERBOX_QEMU ?? 'qemu-system-x86_64';

export function vmPaths(runDir: string) {
  return {
    control: path.join(runDir, 'ctl.sock'),
    qmp: path.join(runDir, 'qmp.sock'),
    /** A second QMP monitor the host only listens on, for events (BLOCK_IO_ERROR): the first serves commands. */
    events: path.join(runDir, 'events.sock'),
    console: path.join(runDir, 'console.log'),
    qemuLog: path.join(runDir, 'qemu.log'),
    pidFile: path.join(runDir, 'qemu.pid'),
  };
}

/** The QEMU command line for a spec (pure; unit-tested). */
export function qemuArgs(spec: VmSpec, layout: DeviceLayout = layoutFor(spec.shape)): string[] {
  const p = vmPaths(spec.runDir);
  const { shape } = spec;
  let machine = 'microvm,x-option-roms=off,rtc=off,acpi=off,isa-serial=on';
  const memArgs: string[] = [];
  if (spec.memoryFile) {
    machine += ',memory-backend=mem';
    memArgs.push('-object', `memory-backend-file,id=mem,size=${shape.memoryMiB}M,mem-path=${spec.memoryFile.path},share=${spec.memoryFile.shared ? 'on' : 'off'}`);
  } else if (spec.ramBackend) {
    machine += ',memory-backend=mem';
    memArgs.push('-object', `memory-backend-ram,id=mem,size=${shape.memoryMiB}M`);
  }
  const args = [
    '-name', `hyperbox,debug-threads=off`,
    // A seccomp filter: no obsolete syscalls, no setuid/privilege changes (and no_new_privs),
    // no fork/exec (a QEMU that tries is killed), no scheduler or affinity changes.
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-M', machine,
    ...memArgs,
    '-accel', shape.accel === 'kvm' ? 'kvm' : 'tcg,tb-size=64',
    '-cpu', shape.accel === 'kvm' ? 'host' : 'max',
    '-m', `${shape.memoryMiB}M`,
    '-smp', String(shape.cpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-kernel', shape.assets.kernel,
    '-initrd', shape.assets.initrd,
    // panic=-1 + -no-reboot: if the agent (PID 1) dies, QEMU exits instead of hanging.
    '-append', ['console=ttyS0 quiet panic=-1', ...clockArgs(shape.accel)].join(' '),
    '-serial', `file:${p.console}`,
    '-device', 'virtio-serial-device,max_ports=2',
    '-chardev', `socket,id=ctl,path=${p.control},server=on,wait=off`,
    '-device', `virtserialport,chardev=ctl,name=${layout.control.port}`,
    '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', 'virtio-rng-device,rng=rng0',
    '-qmp', `unix:${p.qmp},server=on,wait=off`,
    '-chardev', `socket,id=events,path=${p.events},server=on,wait=off`,
    '-mon', 'chardev=events,mode=control',
    ...netdevArgs(spec.net, spec.passtFd),
    '-device', 'virtio-net-device,netdev=net0,mac=52:54:00:12:34:56',
  ];
  if (spec.incoming) args.push('-incoming', 'defer');
  if (spec.startPaused) args.push('-S');
  for (const disk of layout.disks ?? []) {
    const file = spec.disks?.[disk.role];
    if (!file) throw new Error(`the ${disk.role} disk of the device layout has no file`);
    if (/[,=]/.test(file)) throw new Error(`disk path ${file} holds a comma or '='`);
    const ro = disk.role === 'lower';
    // Raw files; the lower one is shared read-only by every container of its image; the
    // upper one gives back what the guest frees (discard), so it stays sparse.
    const mode = ro ? 'read-only=on' : 'read-only=off,discard=unmap';
    args.push(
      '-blockdev', `driver=file,node-name=${disk.role}-file,filename=${file},${mode}`,
      '-blockdev', `driver=raw,node-name=${disk.role},file=${disk.role}-file,${mode}`,
      // A full host filesystem under the sparse upper pauses the VM (QEMU retries the write on
      // `cont`, so the guest loses nothing) and says so with BLOCK_IO_ERROR: virtio-blk has no
      // ENOSPC, and the guest would see a bare EIO on writeback, long after its write returned.
      '-device', `virtio-blk-device,drive=${disk.role},serial=${disk.serial},werror=${ro ? 'report' : 'enospc'},rerror=report`,
    );
  }
  spec.sharePaths.forEach((sharePath, i) => {
    const share = layout.shares[i];
    if (!share) throw new Error(`the device layout has no share #${i}`);
    args.push(
      '-fsdev',
      `local,id=fs${i},path=${sharePath},security_model=passthrough,multidevs=remap`,
      '-device',
      `virtio-9p-device,fsdev=fs${i},mount_tag=${share.tag}`,
    );
  });
  return args;
}
