/**
 * Containers whose VM QEMU stopped on a write the host could not complete: a full
 * host filesystem under a block root's sparse disk (`werror=enospc`, README "A full
 * host filesystem under a disk"). The container shows as paused with the reason in
 * State.Error; `unpause` resumes the VM, QEMU retries the write, and if it fails
 * again the VM stays paused and unpause says why.
 *
 * A daemon restarted while such a VM is stopped cannot re-attach its agent (a VM
 * that cannot run cannot answer): recovery hands it over as a StalledVm
 * (sandbox/adopt.ts), kept paused and owned, its agent attached at `unpause`.
 */
import { conflict, internal } from '../common/errors.js';
import { resumeUnlessStalled, VmStalledError, type StalledVm } from '../sandbox/adopt.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { VmIoError } from '../vm/index.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { LogWriter, parseLogOptions } from './logs.js';
import { transition } from './state.js';

/** How long a stalled container's agent has to answer once its VM runs again (TCG under load is slow). */
const WAKE_TIMEOUT_MS = 10_000;

/** What the lifecycle does for the stalls: follow a main process again, end a container, mark it unpaused. */
export interface StallHost {
  adoptMain(c: Container, sandbox: Sandbox, procId: number): void;
  exited(c: Container, code: number, error: string): void;
  unpaused(c: Container): void;
  /** C and the containers that share its VM (a pod's). */
  sharingVm(c: Container): Container[];
}

export class DiskStalls {
  constructor(
    private readonly ctx: EngineContext,
    private readonly host: StallHost,
  ) {}

  /** QEMU stopped C's VM on write error E: C and those sharing its VM show as paused, with the reason. */
  mark(c: Container, e: VmIoError, announce = false): void {
    const why = e.nospace ? `the host filesystem of ${this.ctx.opts.dataRoot} is full` : `host I/O error (${e.reason || 'unknown'})`;
    const msg = `paused: its ${e.node === 'upper' ? 'writable disk' : `disk ${e.node}`} cannot be written: ${why}; free space and unpause it, or remove it`;
    // Once per stall (and once per daemon that finds it): every retried write that fails
    // again brings another BLOCK_IO_ERROR.
    if (announce || c.record.State.Error !== msg) this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: ${msg}`);
    for (const m of this.host.sharingVm(c)) {
      m.record.State.Error = msg;
      if (!m.record.State.Paused) {
        transition(m.record.State, 'paused');
        this.ctx.events.container(m, 'pause');
      }
      m.save();
    }
  }

  /**
   * Recovery found C's VM stopped on a failed write: C stays paused with the reason,
   * its VM owned (its TAP tied by the caller). `stop`, `kill` and `rm -f` end the VM
   * by pid while it is stuck; a VM that dies meanwhile ends C (137).
   */
  keep(c: Container, stalled: StalledVm): void {
    c.stalled = stalled;
    c.log ??= new LogWriter(c.logFile, parseLogOptions(c.record.HostConfig.LogConfig?.Config));
    stalled.vm.once('exit', (_code, signal) => {
      if (c.stalled === stalled) this.host.exited(c, 137, stalled.stopRequested ? '' : `VM exited unexpectedly${signal ? ` (${signal})` : ''}`);
    });
    this.mark(c, stalled.ioError, true);
  }

  /** `unpause` of a container paused by a failed write (stalled or not): resumes it, or says why it cannot. */
  async resume(c: Container): Promise<void> {
    if (c.stalled) return this.wake(c, c.stalled);
    const vm = c.sandbox!.vm;
    return this.settle(c, () => resumeUnlessStalled(vm));
  }

  /**
   * Resumes a stalled container's VM (QEMU retries the write) and attaches its agent:
   * the container runs on as if the daemon had never restarted. A VM whose agent
   * does not answer is ended, as recovery ends one it cannot re-attach.
   */
  private async wake(c: Container, stalled: StalledVm): Promise<void> {
    let sandbox: Sandbox;
    try {
      sandbox = await stalled.attach(WAKE_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof VmStalledError) throw this.stillStalled(c, err);
      const why = `its VM was resumed but its agent could not be re-attached: ${(err as Error).message}`;
      const now = await stalled.vm.runState().catch((e: Error) => ({ detail: e.message }));
      this.ctx.logger.warn(`container ${c.id.slice(0, 12)}: ${why} (QEMU: ${now.detail})`);
      if (c.stalled === stalled) this.host.exited(c, 137, why);
      throw internal(`Container ${c.id}: ${why}`);
    }
    if (c.stalled !== stalled) {
      // killed while its agent was being attached
      sandbox.release();
      throw conflict(`Container ${c.id} is not running`);
    }
    c.stalled = undefined;
    this.host.adoptMain(c, sandbox, c.record.MainProcId!);
    this.ctx.logger.info(`container ${c.id.slice(0, 12)}: its VM runs again, its agent is re-attached`);
    // The agent can answer before QEMU's retry of the write fails: C is then paused as
    // one whose write failed while the daemon ran (its agent attached, from now on).
    await this.settle(c, () => resumeUnlessStalled(sandbox.vm, false));
  }

  /** Waits out RESUMED (a watch for a stall): C runs on, or stays paused and the caller is told why. */
  private async settle(c: Container, resumed: () => Promise<void>): Promise<void> {
    try {
      await resumed();
    } catch (err) {
      throw err instanceof VmStalledError ? this.stillStalled(c, err) : err;
    }
    this.host.unpaused(c);
  }

  /** The write that paused C failed again: C stays paused, and the caller is told why. */
  private stillStalled(c: Container, err: VmStalledError): Error {
    this.mark(c, err.ioError);
    return conflict(`Container ${c.id} is still ${c.record.State.Error}`);
  }
}
