/**
 * A container's lifecycle: start, stop, restart, kill, pause, unpause, and what
 * happens when its main process exits. Operations that change the state take
 * the container's operation lock (state.ts), so a stop arriving during a start
 * waits for it instead of polling, and every state change is a transition of
 * the state machine. Removal is removal.ts's; creation, create.ts's.
 */
import { randomBytes } from 'node:crypto';
import type { GuestProcess } from '../agent/connection.js';
import { conflict, HyperboxError, internal, notModified } from '../common/errors.js';
import { sizedLayerUsage } from '../images/rootfs.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { Attachment, Container } from './container.js';
import type { EngineContext } from './context.js';
import type { ExecManager } from './exec.js';
import { forwardStdin } from './exec.js';
import { acknowledgeLogged } from './log-acks.js';
import { LogWriter, parseLogOptions } from './logs.js';
import type { RestartManager } from './restart-manager.js';
import { parseSignal } from './signals.js';
import { prepareRoot, releaseStorage, startContainerVm, startMainProcess } from './start-vm.js';
import { transition } from './state.js';
import { DiskStalls } from './disk-stall.js';

/** What the lifecycle asks of the removal service (--rm). */
export interface Remover {
  removeUnlocked(c: Container, opts: { force?: boolean; volumes?: boolean }): Promise<void>;
  remove(idOrName: string, opts: { force?: boolean; volumes?: boolean }): Promise<void>;
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

export class Lifecycle {
  remover!: Remover;
  restarts!: RestartManager;
  /** Containers paused by a write the host could not complete (recovery hands stalled VMs to it). */
  readonly stalls: DiskStalls;

  constructor(
    private readonly ctx: EngineContext,
    private readonly execs: ExecManager,
  ) {
    this.stalls = new DiskStalls(ctx, {
      adoptMain: (c, sandbox, procId) => this.adoptMain(c, sandbox, procId),
      exited: (c, code, error) => this.onExit(c, code, error),
      unpaused: (c) => this.markUnpaused(c),
      sharingVm: (c) => this.sharingVm(c),
    });
  }

  start(idOrName: string, opts: { byPolicy?: boolean } = {}): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    if (!opts.byPolicy) this.restarts.resetForUserStart(c);
    return c.lock.run('start', () => this.startUnlocked(c));
  }

  /** `restart`: stop (if running) and start, as one operation. */
  restart(idOrName: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    this.restarts.resetForUserStart(c);
    return c.lock.run('restart', async () => {
      if (c.running && c.attached) await this.stopUnlocked(c, opts);
      await this.startUnlocked(c);
    });
  }

  private async startUnlocked(c: Container): Promise<void> {
    if (c.removed) throw conflict(`container ${c.id} is being removed`);
    if (c.running) throw notModified('container already started');
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    try {
      let t = performance.now();
      const prepared = await prepareRoot(this.ctx, c);
      phases.rootfs = Math.round(performance.now() - t);
      const { sandbox, root, pod } = await startContainerVm(this.ctx, c, prepared, phases);
      if (sandbox.info.fallbackReason) this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: cold boot instead of a clone: ${sandbox.info.fallbackReason}`);
      c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
      c.log.resync();
      t = performance.now();
      const main = await startMainProcess(c, sandbox, root);
      phases.exec = Math.round(performance.now() - t);
      phases.total = Math.round(performance.now() - t0);
      c.main = main;
      c.record.StartInfo = sandbox.info;
      c.record.VmPid = sandbox.pid;
      // A pod member's VM is the pod's: the pod keeps its run directory; the member its process.
      c.record.VmRunDir = pod ? undefined : sandbox.runDir;
      c.record.MainProcId = main.id;
      c.record.MainLogRun = main.keeps ? randomBytes(6).toString('hex') : undefined;
      transition(c.record.State, 'running', { pid: sandbox.pid });
      c.save();
      this.wireMainProcess(c, main);
      this.ctx.events.container(c, 'start');
      this.ctx.logger.debug(`started ${c.id.slice(0, 12)} in ${phases.total} ms as ${sandbox.info.mode} ${JSON.stringify(phases)}`);
    } catch (err) {
      // As dockerd: a --rm container that cannot start is removed, which also
      // answers the client's wait(condition=removed) and ends its attach.
      if (c.record.HostConfig.AutoRemove) {
        for (const a of c.attachments) a.end();
        c.attachments.clear();
        await this.remover.removeUnlocked(c, { force: true }).catch((e: Error) => this.ctx.logger.warn(`auto-remove ${c.id.slice(0, 12)} after a failed start: ${e.message}`));
      }
      if (!(err instanceof HyperboxError)) {
        c.record.State.Error = (err as Error).message;
        c.save();
        throw internal((err as Error).message);
      }
      throw err;
    }
  }

  /** Follows a running main process: output to log and attachments, exit, a VM or channel that dies. */
  wireMainProcess(c: Container, main: GuestProcess): void {
    const sandbox = c.sandbox!;
    const log = c.log!;
    // A log writer that falls behind stops this VM's channel from being read (see AgentConnection.hold).
    log.onPressure = (on) => sandbox.agent.hold(log, on);
    const run = main.keeps ? c.record.MainLogRun : undefined;
    const forward = (stream: 'stdout' | 'stderr') => (data: Buffer, position: number) => {
      log.write(stream, data, run ? { run, position } : undefined);
      for (const a of c.attachments) a[stream]?.(data);
    };
    main.on('stdout', forward('stdout'));
    main.on('stderr', forward('stderr'));
    main.on('exit', (st) => this.onExit(c, st.code, '', st.oomKilled));
    if (run) acknowledgeLogged(main, log, run);
    main.on('gap', (bytes) => this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: ${bytes} bytes of output were missing from its log at re-attach`));
    // A VM that dies under us (QEMU killed, guest panic) is a container killed.
    sandbox.vm.once('exit', (_code, signal) => {
      if (c.main === main) this.onExit(c, 137, `VM exited unexpectedly${signal ? ` (${signal})` : ''}`);
    });
    sandbox.vm.on('io-error', (e) => {
      if (c.main === main) this.stalls.mark(c, e);
    });
    sandbox.agent.once('close', (err) => {
      if (c.main === main && err && !sandbox.forced) {
        this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: agent channel failed: ${err.message}; stopping its VM`);
        sandbox.vm.stop();
      }
    });
    for (const a of c.attachments) if (a.stdin) this.pipeStdin(c, main, a);
    main.release();
  }

  private pipeStdin(c: Container, proc: GuestProcess, a: Attachment): void {
    forwardStdin(a.stdin!, proc, () => {
      if (c.record.Config.StdinOnce || !c.record.Config.OpenStdin) proc.endStdin();
    });
  }

  /** A sandbox whose agent outlived the daemon (live restore, or a stalled VM woken): its main process, followed again. */
  adoptMain(c: Container, sandbox: Sandbox, procId: number): void {
    c.sandbox = sandbox;
    c.main = sandbox.agent.adopted(procId)!;
    c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
    this.wireMainProcess(c, c.main);
  }

  onExit(c: Container, code: number, error: string, oomKilled = false): void {
    if (!c.attached) return;
    c.main = undefined;
    const sandbox = c.sandbox;
    c.sandbox = undefined;
    sandbox?.release();
    const stalled = c.stalled;
    c.stalled = undefined;
    stalled?.release();
    releaseStorage(c);
    transition(c.record.State, 'exited', { exitCode: code, error, oomKilled });
    c.record.VmPid = undefined;
    c.record.Endpoint = undefined;
    c.save();
    for (const a of c.attachments) a.end();
    c.attachments.clear();
    this.execs.containerExited(c.id);
    const layer = sizedLayerUsage(c.dir);
    if (layer && layer.free < 1024 * 1024) {
      this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: its writable layer is full (${Math.round(layer.used / 1048576)} MiB used): writes in it fail with "No space left on device"`);
    }
    if (oomKilled) this.ctx.events.container(c, 'oom');
    this.ctx.events.container(c, 'die', { exitCode: String(code) });
    c.emit('exit', code);
    if (!this.restarts.afterExit(c, code) && c.record.HostConfig.AutoRemove) {
      void this.remover.remove(c.id, { force: true, volumes: true }).catch((err) => this.ctx.logger.warn(`auto-remove ${c.id}: ${(err as Error).message}`));
    }
  }

  /** Attaches a client to the container's stdio; before start, it waits for it. */
  attach(idOrName: string, a: Attachment): Container {
    const c = this.ctx.registry.get(idOrName);
    c.attachments.add(a);
    if (c.main && a.stdin) this.pipeStdin(c, c.main, a);
    if (!c.running && !c.starting && c.record.State.Status !== 'created') {
      c.attachments.delete(a);
      a.end();
    }
    return c;
  }

  detach(c: Container, a: Attachment): void {
    c.attachments.delete(a);
  }

  resize(idOrName: string, rows: number, cols: number): void {
    const c = this.ctx.registry.get(idOrName);
    if (!c.main) throw conflict(`Container ${c.id} is not running`);
    if (c.record.Config.Tty) c.main.resize(rows, cols);
  }

  async wait(idOrName: string, condition: 'not-running' | 'next-exit' | 'removed' = 'not-running'): Promise<number> {
    const c = this.ctx.registry.get(idOrName);
    if (condition === 'removed') {
      await c.waitRemoved();
      return c.record.State.ExitCode;
    }
    if (condition === 'next-exit') return c.waitNextExit();
    return c.waitNotRunning();
  }

  /** Sends a signal; takes no lock, so it can cut a stop's grace period short. */
  async kill(idOrName: string, signal?: string | number): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    if (!c.running || !c.attached) throw conflict(`Cannot kill container: ${idOrName}: container ${c.id} is not running`);
    const signo = parseSignal(signal, 'SIGKILL');
    // Killing it (not signalling it, e.g. the CLI's forwarded SIGWINCH) is a manual stop.
    if (signo === 9 || signo === parseSignal(c.record.Config.StopSignal, 'SIGTERM')) c.record.ManuallyStopped = true;
    if (c.record.State.Paused && !(await c.lock.run('unpause', () => this.resumeToSignal(c, signo === 9)))) {
      // Its guest cannot run to take SIGKILL: the VM goes, by pid.
      this.ctx.events.container(c, 'kill', { signal: '9' });
      this.onExit(c, 137, '');
      return;
    }
    c.main?.signal(signo);
    if (signo === 9) {
      // The guest may be wedged: make SIGKILL certain.
      const sandbox = c.sandbox;
      setTimeout(() => sandbox?.forceStop(), 2000).unref();
    }
    this.ctx.events.container(c, 'kill', { signal: String(signo) });
  }

  /**
   * Resumes a paused C so that its processes can take a signal. A VM stopped on a
   * write the host still refuses cannot run: false then if GIVEUP (the caller ends it),
   * else the error saying so.
   */
  private async resumeToSignal(c: Container, giveUp: boolean): Promise<boolean> {
    try {
      await this.unpauseUnlocked(c);
      return true;
    } catch (err) {
      if (giveUp && (c.stalled || c.record.State.Error)) return false;
      throw err;
    }
  }

  stop(idOrName: string, opts: { timeout?: number; signal?: string; byDaemon?: boolean } = {}): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    return c.lock.run('stop', async () => {
      // Stopping a container that waits to be restarted: it stays down.
      if (this.restarts.cancelPending(c)) return;
      if (!c.running || !c.attached) throw notModified('container already stopped');
      await this.stopUnlocked(c, opts);
    });
  }

  private async stopUnlocked(c: Container, opts: { timeout?: number; signal?: string; byDaemon?: boolean }): Promise<void> {
    if (!opts.byDaemon) c.record.ManuallyStopped = true;
    if (c.record.State.Paused && !(await this.resumeToSignal(c, true))) {
      // Its VM cannot run to stop gracefully: it is ended by pid (137), as a stop that times out.
      this.onExit(c, 137, '');
      this.ctx.events.container(c, 'stop');
      return;
    }
    const timeout = opts.timeout ?? c.record.Config.StopTimeout ?? 10;
    const exited = c.waitNextExit();
    c.main?.signal(parseSignal(opts.signal ?? c.record.Config.StopSignal, 'SIGTERM'));
    const graceful = timeout < 0 ? await exited.then(() => true) : await Promise.race([exited.then(() => true), sleepMs(timeout * 1000).then(() => false)]);
    if (!graceful && c.main) {
      c.main.signal(9);
      const sandbox = c.sandbox;
      const forced = await Promise.race([exited.then(() => true), sleepMs(2000).then(() => false)]);
      if (!forced) sandbox?.forceStop();
      await exited;
    }
    this.ctx.events.container(c, 'stop');
  }

  /**
   * Freezes the container's VM (vCPUs stopped; memory kept). A pod's VM is
   * shared: pausing one member freezes all of them, so all are marked paused.
   */
  pause(idOrName: string): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    return c.lock.run('pause', async () => {
      if (!c.running) throw conflict(`Container ${c.id} is not running`);
      if (c.record.State.Paused) throw conflict(`Container ${c.id} is already paused`);
      if (!c.sandbox) throw conflict(`Container ${c.id} is not running`);
      await c.sandbox.pause();
      for (const m of this.sharingVm(c)) {
        transition(m.record.State, 'paused');
        m.save();
        this.ctx.events.container(m, 'pause');
      }
    });
  }

  unpause(idOrName: string): Promise<void> {
    const c = this.ctx.registry.get(idOrName);
    return c.lock.run('unpause', () => this.unpauseUnlocked(c));
  }

  private async unpauseUnlocked(c: Container): Promise<void> {
    if (!c.record.State.Paused || !(c.sandbox || c.stalled)) throw conflict(`Container ${c.id} is not paused`);
    // Paused by QEMU on a failed write (the reason is in State.Error), or stalled since a daemon restart.
    if (c.stalled || c.record.State.Error) return this.stalls.resume(c);
    await c.sandbox!.resume();
    this.markUnpaused(c);
  }

  markUnpaused(c: Container): void {
    for (const m of this.sharingVm(c)) {
      if (!m.record.State.Paused) continue;
      transition(m.record.State, 'running');
      m.record.State.Error = '';
      m.save();
      this.ctx.events.container(m, 'unpause');
    }
  }

  /** C and, for a pod member, every running member of its pod (they share one VM). */
  sharingVm(c: Container): Container[] {
    if (!c.record.PodId) return [c];
    return this.ctx.registry.podMembers(c.record.PodId).filter((m) => m.running);
  }
}
