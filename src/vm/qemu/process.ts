/**
 * One QEMU process: a `qemu-system-x86_64` per VM, detached from the daemon's
 * process group so a daemon restart does not take the VMs down with it. Its
 * sockets and logs live in its own run directory. Pause and resume are QMP
 * `stop` and `cont`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { HostUsage, MigrationSockets, MigrationStats, VmEvents, VmHandle, VmRunState, VmState } from '../driver.js';
import { QEMU_BINARY, qemuArgs, vmPaths, type VmSpec } from './args.js';
import { PASST, PASST_FD, startPasst } from './passt.js';
import { jailedCommand, releaseJail, type JailRecord } from './jail.js';
import { QmpClient } from './qmp.js';
import { cancelOutgoing, migrateOut } from './live-migration.js';

/** Whether PID is a live QEMU process (not its jail's monitor) whose command line names RUNDIR. */
export function isQemuOf(pid: number, runDir: string): boolean {
  try {
    const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z' && comm.startsWith('qemu') && cmdline.includes(runDir);
  } catch {
    return false;
  }
}

/** The children of PID. */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The QEMU of RUNDIR given its pid or its jail monitor's (a run directory records the process started). */
export function findQemu(pid: number, runDir: string): number | undefined {
  if (isQemuOf(pid, runDir)) return pid;
  return childrenOf(pid).find((child) => isQemuOf(child, runDir));
}

export class QemuVm extends EventEmitter<VmEvents> implements VmHandle {
  exited = false;
  /** What the host last told the VM (a clone waiting for its state is paused). */
  private vcpus: 'running' | 'paused' = 'running';
  /** BLOCK_IO_ERROR events that stopped the VM so far. */
  private ioErrors = 0;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly paths: ReturnType<typeof vmPaths>;

  private child: ChildProcess | undefined;

  /** Started through the jail: PROCESSPID is the jail's monitor, QEMU is its child. */
  private jailed = false;
  private qemuPid: number | undefined;
  /** What its jail set up on the host (undefined for an adopted VM: read from its run directory then). */
  private jail: JailRecord | undefined;

  private constructor(
    /** The process started (or adopted) for this VM: QEMU or the monitor of its jail; it lives as long as QEMU. */
    readonly processPid: number,
    readonly runDir: string,
  ) {
    super();
    this.paths = vmPaths(runDir);
  }

  static launch(spec: VmSpec): QemuVm {
    fs.mkdirSync(spec.runDir, { recursive: true });
    const p = vmPaths(spec.runDir);
    for (const f of [p.control, p.qmp, p.events]) fs.rmSync(f, { force: true });
    // The built-in network (not a template's or the probe's: they have no NetSpec) through passt where installed.
    const userNet = spec.net && !spec.net.tap && !spec.net.restrict && PASST ? startPasst(spec.runDir, spec.net) : undefined;
    const log = fs.openSync(p.qemuLog, 'w');
    let child: ChildProcess;
    let cmd: string[];
    let jail: JailRecord | undefined;
    try {
      try {
        ({ cmd, record: jail } = jailedCommand(spec, [QEMU_BINARY, ...qemuArgs({ ...spec, passtFd: userNet ? PASST_FD : undefined })]));
      } catch (err) {
        throw new Error(`cannot prepare the QEMU jail: ${(err as Error).message}`);
      }
      if (spec.net?.netns) cmd = inNetns(spec.net.netns, cmd);
      child = spawn(cmd[0]!, cmd.slice(1), { detached: true, stdio: ['ignore', log, log, userNet?.qemuEnd ?? 'ignore'] });
    } catch (err) {
      userNet?.passt.kill('SIGKILL');
      throw err;
    } finally {
      fs.closeSync(log);
      userNet?.qemuEnd.destroy(); // QEMU holds its own copy now; passt exits when QEMU closes it
    }
    if (child.pid === undefined) {
      userNet?.passt.kill('SIGKILL');
      throw new Error(`cannot start ${QEMU_BINARY}`);
    }
    const vm = new QemuVm(child.pid, spec.runDir);
    vm.jailed = jail !== undefined;
    vm.jail = jail;
    vm.child = child;
    if (spec.incoming) vm.vcpus = 'paused'; // until the device state is loaded and `cont` sent
    fs.writeFileSync(p.pidFile, String(child.pid));
    child.on('error', () => vm.markExited(null, 'SIGKILL'));
    child.on('exit', (code, signal) => vm.markExited(code, signal));
    child.unref();
    vm.watchEvents();
    return vm;
  }

  /**
   * A VM started by an earlier daemon (live restore), if PID is still the QEMU
   * of RUNDIR. It is not our child: its exit is noticed by polling.
   */
  /** An adopted VM's exit poll (unref'd like a child, but ref'd while someone waits for the exit). */
  private exitPoll: NodeJS.Timeout | undefined;

  static adopt(recorded: number, runDir: string): QemuVm | undefined {
    const pid = findQemu(recorded, runDir);
    if (pid === undefined) return undefined;
    const vm = new QemuVm(pid, runDir);
    const timer = setInterval(() => {
      if (!isQemuOf(pid, runDir)) {
        clearInterval(timer);
        vm.markExited(null, 'SIGKILL');
      }
    }, 500);
    timer.unref();
    vm.exitPoll = timer;
    vm.once('exit', () => clearInterval(timer));
    if (fs.existsSync(vm.paths.events)) vm.watchEvents();
    return vm;
  }

  /**
   * Listens on the VM's event monitor for its life: a write error that paused the VM
   * (werror=enospc on the writable disk) becomes an 'io-error'. A VM whose QEMU predates
   * the event monitor (live restore across an upgrade) has none: nothing is heard then.
   */
  private watchEvents(): void {
    const deadline = Date.now() + 30_000;
    const attach = async (): Promise<void> => {
      // In short tries, so that a QEMU that dies before it listens is not waited for long.
      while (!this.exited && Date.now() < deadline) {
        try {
          const qmp = await QmpClient.connect(this.paths.events, 1_000);
          if (this.exited) return qmp.close();
          this.once('exit', () => qmp.close());
          qmp.onEvent((ev) => this.onQmpEvent(ev));
          return;
        } catch {
          /* not listening yet */
        }
      }
    };
    void attach();
  }

  private onQmpEvent(ev: { event: string; data?: unknown }): void {
    if (ev.event !== 'BLOCK_IO_ERROR') return;
    const d = (ev.data ?? {}) as { 'node-name'?: string; device?: string; action?: string; nospace?: boolean; reason?: string };
    if (d.action !== 'stop') return;
    this.vcpus = 'paused';
    this.ioErrors++;
    this.emit('io-error', { node: d['node-name'] || d.device || '?', nospace: d.nospace === true, reason: d.reason ?? '' });
  }

  private markExited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    // The jail's monitor reports a QEMU killed by signal N as status 128+N.
    if (this.jailed && code !== null && code > 128 && code < 128 + 65) {
      const signo = code - 128;
      signal = (Object.entries(os.constants.signals).find(([, n]) => n === signo)?.[0] as NodeJS.Signals | undefined) ?? signal;
      if (signal) code = null;
    }
    releaseJail(this.runDir, this.jail);
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

  /** QEMU's own pid (inside a jail, the monitor's child; the monitor's until QEMU has been exec'd). */
  get pid(): number {
    this.qemuPid ??= this.jailed ? findQemu(this.processPid, this.runDir) : this.processPid;
    return this.qemuPid ?? this.processPid;
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
    // QEMU itself; its jail's monitor then exits with QEMU's status (killing the
    // monitor would hide how QEMU died, and leave QEMU running).
    const pid = this.pid;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    // Stopped within moments of its launch, before the monitor's child became QEMU: that child goes too.
    if (this.jailed && pid === this.processPid) {
      for (const child of childrenOf(this.processPid)) {
        try {
          process.kill(child, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }
  }

  pause(): Promise<void> {
    return this.qmp('stop').then(() => void (this.vcpus = 'paused'));
  }

  resume(): Promise<void> {
    const stalls = this.ioErrors;
    // QEMU may stop again on a write error before it answers `cont` (its event came first).
    return this.qmp('cont').then(() => void (this.ioErrors === stalls && (this.vcpus = 'running')));
  }

  migrateOut(sockets: MigrationSockets, timeoutMs: number): Promise<MigrationStats> {
    return migrateOut((c, a) => this.qmp(c, a), sockets, timeoutMs);
  }

  cancelMigration(): Promise<void> {
    return cancelOutgoing((c, a) => this.qmp(c, a));
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

  /**
   * QMP `query-status`; for a VM stopped on a write error (`io-error`), `query-block`
   * says which disk failed and whether the host was out of space (its `io-status`,
   * kept by QEMU for disks with a `werror` policy until the write succeeds).
   */
  async runState(): Promise<VmRunState> {
    const status = ((await this.qmp('query-status')) as { status?: string }).status ?? '';
    if (status === 'running' || status === 'paused') {
      this.vcpus = status;
      return { state: status, detail: status };
    }
    if (status !== 'io-error') return { state: 'other', detail: status };
    this.vcpus = 'paused';
    type BlockInfo = { device?: string; 'io-status'?: string; inserted?: { 'node-name'?: string } };
    const blocks = ((await this.qmp('query-block').catch(() => [])) as BlockInfo[]) ?? [];
    const failed = blocks.find((b) => b['io-status'] !== undefined && b['io-status'] !== 'ok');
    const node = failed?.inserted?.['node-name'] || failed?.device || '?';
    return { state: 'io-error', detail: status, error: { node, nospace: failed?.['io-status'] === 'nospace', reason: failed ? `io-status ${failed['io-status']}` : 'run state io-error' } };
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
    this.exitPoll?.ref();
    return new Promise((resolve) => this.once('exit', () => (this.child?.unref(), resolve())));
  }
}

/**
 * CMD run in network namespace NETNS (a pod's, which CNI prepared): QEMU opens
 * its TAP there. Its jail keeps the namespace it starts in; everything else QEMU
 * talks through (QMP, the agent's port, migration) is a unix socket in a file.
 */
export function inNetns(netns: string, cmd: string[]): string[] {
  if (!path.isAbsolute(netns) || !fs.existsSync(netns)) throw new Error(`network namespace ${netns} does not exist`);
  return ['nsenter', `--net=${netns}`, '--', ...cmd];
}
