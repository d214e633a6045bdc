/**
 * QEMU driver: one `qemu-system-x86_64` process per VM on the minimal `microvm`
 * machine, with the agent's control channel on virtio-serial, the container roots
 * on virtio-9p, an RNG on virtio-rng and a NIC on virtio-net (QEMU user-mode network). The VM's sockets and console log live in
 * its own run directory. QEMU runs detached from the daemon's process group so a
 * daemon restart does not take the VMs down with it.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { GuestAssets } from './assets.js';
import { QmpClient } from './qmp.js';

export type Accel = 'kvm' | 'tcg';

export interface Share {
  tag: string;
  path: string;
  readonly?: boolean;
}

/** A published port: QEMU's user-mode network forwards hostIp:hostPort to the guest. */
export interface PortForward {
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** The guest's user-mode (slirp) network backend. The NIC itself is always there
 * (it is part of the device layout that clones share with their template). */
export interface NetSpec {
  forwards: PortForward[];
  /** No traffic to or from the outside (`--network none`). */
  restrict?: boolean;
  /** A TAP device on a bridge network instead of user mode (the NIC is the same). */
  tap?: string;
}

/** Addresses of QEMU's user-mode network (its defaults, spelled out). */
export const USER_NET = { subnet: '10.0.2.0/24', guest: '10.0.2.15', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

/** `-netdev` arguments: the NIC's backend (net0), plus what a clone's state needs. */
export function netdevArgs(net: NetSpec | undefined): string[] {
  if (net?.tap) {
    if (!/^[a-zA-Z0-9_-]{1,15}$/.test(net.tap)) throw new Error(`bad TAP name ${net.tap}`);
    // A template's migration stream carries a slirp section: a clone restores it
    // into this idle, restricted user netdev, while its NIC uses the TAP.
    return ['-netdev', `tap,id=net0,ifname=${net.tap},script=no,downscript=no`, '-netdev', 'user,id=slirp0,restrict=on,ipv6=off'];
  }
  let arg = `user,id=net0,net=${USER_NET.subnet},host=${USER_NET.gateway},dns=${USER_NET.dns},dhcpstart=${USER_NET.guest},ipv6=off`;
  if (net?.restrict) arg += ',restrict=on';
  for (const f of net?.forwards ?? []) {
    if (!/^[0-9a-fA-F.:]*$/.test(f.hostIp)) throw new Error(`bad host address ${f.hostIp}`);
    arg += `,hostfwd=${f.proto}:${f.hostIp}:${f.hostPort}-${USER_NET.guest}:${f.guestPort}`;
  }
  return ['-netdev', arg];
}

export interface VmSpec {
  /** Run directory for this VM's sockets and logs (kept short: unix socket paths are limited to 107 bytes). */
  runDir: string;
  assets: GuestAssets;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  shares: Share[];
  /** Guest RAM in a file: shared for a template (the file becomes its memory image),
   * private for a clone (copy-on-write pages over the template's file). */
  memoryFile?: { path: string; shared: boolean };
  /** Start paused, waiting for `migrate-incoming` (clones). */
  incoming?: boolean;
  /** User-mode network backend (forwards differ per VM; the NIC is always present). */
  net?: NetSpec;
}

export const QEMU_BINARY = process.env.HYPERBOX_QEMU ?? 'qemu-system-x86_64';

export function vmPaths(runDir: string) {
  return {
    control: path.join(runDir, 'ctl.sock'),
    qmp: path.join(runDir, 'qmp.sock'),
    console: path.join(runDir, 'console.log'),
    qemuLog: path.join(runDir, 'qemu.log'),
    pidFile: path.join(runDir, 'qemu.pid'),
  };
}

/** The QEMU command line for a spec (pure; unit-tested). */
export function qemuArgs(spec: VmSpec): string[] {
  const p = vmPaths(spec.runDir);
  let machine = 'microvm,x-option-roms=off,rtc=off,acpi=off,isa-serial=on';
  const memArgs: string[] = [];
  if (spec.memoryFile) {
    machine += ',memory-backend=mem';
    memArgs.push('-object', `memory-backend-file,id=mem,size=${spec.memoryMiB}M,mem-path=${spec.memoryFile.path},share=${spec.memoryFile.shared ? 'on' : 'off'}`);
  }
  const args = [
    '-name', `hyperbox,debug-threads=off`,
    '-M', machine,
    ...memArgs,
    '-accel', spec.accel === 'kvm' ? 'kvm' : 'tcg,tb-size=64',
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', `${spec.memoryMiB}M`,
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-kernel', spec.assets.kernel,
    '-initrd', spec.assets.initrd,
    // panic=-1 + -no-reboot: if the agent (PID 1) dies, QEMU exits instead of hanging.
    '-append', 'console=ttyS0 quiet panic=-1',
    '-serial', `file:${p.console}`,
    '-device', 'virtio-serial-device,max_ports=2',
    '-chardev', `socket,id=ctl,path=${p.control},server=on,wait=off`,
    '-device', 'virtserialport,chardev=ctl,name=hyperbox.0',
    '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', 'virtio-rng-device,rng=rng0',
    '-qmp', `unix:${p.qmp},server=on,wait=off`,
    ...netdevArgs(spec.net),
    '-device', 'virtio-net-device,netdev=net0,mac=52:54:00:12:34:56',
  ];
  if (spec.incoming) args.push('-incoming', 'defer');
  spec.shares.forEach((s, i) => {
    args.push(
      '-fsdev',
      `local,id=fs${i},path=${s.path},security_model=passthrough,multidevs=remap${s.readonly ? ',readonly=on' : ''}`,
      '-device',
      `virtio-9p-device,fsdev=fs${i},mount_tag=${s.tag}`,
    );
  });
  return args;
}

/** Whether PID is a live QEMU process whose command line names RUNDIR. */
export function isQemuOf(pid: number, runDir: string): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z' && cmdline.includes('qemu') && cmdline.includes(runDir);
  } catch {
    return false;
  }
}

export class QemuVm extends EventEmitter<{ exit: [code: number | null, signal: NodeJS.Signals | null] }> {
  exited = false;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly paths: ReturnType<typeof vmPaths>;

  private child: import('node:child_process').ChildProcess | undefined;

  private constructor(
    readonly pid: number,
    readonly runDir: string,
  ) {
    super();
    this.paths = vmPaths(runDir);
  }

  static launch(spec: VmSpec): QemuVm {
    fs.mkdirSync(spec.runDir, { recursive: true });
    const p = vmPaths(spec.runDir);
    for (const f of [p.control, p.qmp]) fs.rmSync(f, { force: true });
    const log = fs.openSync(p.qemuLog, 'w');
    const child = spawn(QEMU_BINARY, qemuArgs(spec), { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    if (child.pid === undefined) throw new Error(`cannot start ${QEMU_BINARY}`);
    const vm = new QemuVm(child.pid, spec.runDir);
    vm.child = child;
    fs.writeFileSync(p.pidFile, String(child.pid));
    child.on('error', () => vm.markExited(null, 'SIGKILL'));
    child.on('exit', (code, signal) => vm.markExited(code, signal));
    child.unref();
    return vm;
  }

  /**
   * A VM started by an earlier daemon (live restore), if PID is still the QEMU
   * of RUNDIR. It is not our child: its exit is noticed by polling.
   */
  static adopt(pid: number, runDir: string): QemuVm | undefined {
    if (!isQemuOf(pid, runDir)) return undefined;
    const vm = new QemuVm(pid, runDir);
    const timer = setInterval(() => {
      if (!isQemuOf(pid, runDir)) {
        clearInterval(timer);
        vm.markExited(null, 'SIGKILL');
      }
    }, 500);
    timer.unref();
    vm.once('exit', () => clearInterval(timer));
    return vm;
  }

  private markExited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    this.exitCode = code;
    this.exitSignal = signal;
    this.emit('exit', code, signal);
  }

  /** What QEMU printed (errors) and the tail of the guest console: for error messages. */
  diagnostics(maxBytes = 2000): string {
    const read = (f: string) => {
      try {
        const s = fs.readFileSync(f, 'utf8');
        return s.slice(-maxBytes).trim();
      } catch {
        return '';
      }
    };
    return [read(this.paths.qemuLog), read(this.paths.console)].filter(Boolean).join('\n');
  }

  kill(): void {
    if (this.exited) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }

  /** Runs one QMP command on this VM (pause is "stop", resume is "cont"). */
  async qmp(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const qmp = await QmpClient.connect(this.paths.qmp, 5000);
    try {
      return await qmp.execute(command, args);
    } finally {
      qmp.close();
    }
  }

  /** The QEMU process's resident memory and CPU time, as the host sees them. */
  hostUsage(): { rssBytes: number; cpuNs: number; readBytes: number; writeBytes: number } {
    try {
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      const rss = Number(fields[21]) * 4096;
      let readBytes = 0;
      let writeBytes = 0;
      try {
        const io = fs.readFileSync(`/proc/${this.pid}/io`, 'utf8');
        readBytes = Number(/^read_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
        writeBytes = Number(/^write_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
      } catch {
        /* no I/O accounting on this kernel */
      }
      return { rssBytes: rss, cpuNs: ticks * 10_000_000, readBytes, writeBytes };
    } catch {
      return { rssBytes: 0, cpuNs: 0, readBytes: 0, writeBytes: 0 };
    }
  }

  waitExit(): Promise<void> {
    if (this.exited) return Promise.resolve();
    // The child is unref'd so VMs never hold the daemon open; while someone
    // waits for the exit, it must.
    this.child?.ref();
    return new Promise((resolve) => this.once('exit', () => (this.child?.unref(), resolve())));
  }
}
