/**
 * One QEMU process: a `qemu-system-x86_64` per VM, detached from the daemon's
 * process group so a daemon restart does not take the VMs down with it. Its
 * sockets and logs live in its own run directory. Pause and resume are QMP
 * `stop` and `cont`.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type { HostUsage, VmHandle, VmState } from '../driver.js';
import { QEMU_BINARY, qemuArgs, vmPaths, type VmSpec } from './args.js';
import { QmpClient } from './qmp.js';

/**
 * Capabilities a QEMU run as root keeps: what 9p passthrough needs to give the
 * guest root's view of its files (chown, permission and owner overrides,
 * setuid bits kept on chown, device nodes, file capabilities) and opening a
 * TAP. Everything else (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, ...) is
 * dropped from the bounding set before exec, so a QEMU bug is not full root.
 */
export const QEMU_CAPABILITIES = ['chown', 'dac_override', 'fowner', 'fsetid', 'mknod', 'setfcap', 'net_admin'];

/** CMD run through setpriv with a cut bounding set and no inheritable capabilities (as root, if setpriv is there). */
function confined(cmd: string[]): string[] {
  if (process.getuid?.() !== 0 || !SETPRIV) return cmd;
  return [SETPRIV, `--bounding-set=-all,${QEMU_CAPABILITIES.map((c) => `+${c}`).join(',')}`, '--inh-caps=-all', '--', ...cmd];
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

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

export class QemuVm extends EventEmitter<{ exit: [code: number | null, signal: NodeJS.Signals | null] }> implements VmHandle {
  exited = false;
  /** What the host last told the VM (a clone waiting for its state is paused). */
  private vcpus: 'running' | 'paused' = 'running';
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
    const [cmd, ...argv] = confined([QEMU_BINARY, ...qemuArgs(spec)]);
    const child = spawn(cmd!, argv, { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    if (child.pid === undefined) throw new Error(`cannot start ${QEMU_BINARY}`);
    const vm = new QemuVm(child.pid, spec.runDir);
    vm.child = child;
    if (spec.incoming) vm.vcpus = 'paused'; // until the device state is loaded and `cont` sent
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

  get state(): VmState {
    return this.exited ? 'exited' : this.vcpus;
  }

  /** Records that QEMU was left paused or resumed by a QMP command sent elsewhere (clone restore). */
  markState(state: 'running' | 'paused'): void {
    this.vcpus = state;
  }

  get controlSocket(): string {
    return this.paths.control;
  }

  stop(): void {
    if (this.exited) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }

  pause(): Promise<void> {
    return this.qmp('stop').then(() => void (this.vcpus = 'paused'));
  }

  resume(): Promise<void> {
    return this.qmp('cont').then(() => void (this.vcpus = 'running'));
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
  hostUsage(): HostUsage {
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
