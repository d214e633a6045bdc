/**
 * Restart policies applied: after an exit (Docker's back-off, see restart.ts),
 * when the daemon starts, and cancelled by a user's stop or start.
 */
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { restartDelayMs, restartsWithDaemon, shouldRestart } from './restart.js';
import { transition } from './state.js';

export class RestartManager {
  constructor(
    private readonly ctx: EngineContext,
    private readonly start: (id: string, opts: { byPolicy: boolean }) => Promise<void>,
  ) {}

  /** After C exited with CODE: schedules a restart if its policy says so (returns whether it did). */
  afterExit(c: Container, code: number): boolean {
    const count = c.record.RestartCount ?? 0;
    if (c.removed || this.ctx.shuttingDown || !shouldRestart(c.record.HostConfig.RestartPolicy, code, count, !!c.record.ManuallyStopped)) return false;
    const delayMs = restartDelayMs(count, Date.now() - Date.parse(c.record.State.StartedAt));
    transition(c.record.State, 'restarting');
    c.save();
    const timer = setTimeout(() => {
      c.restartTimer = undefined;
      if (c.removed || c.running || c.record.ManuallyStopped) return;
      c.record.RestartCount = (c.record.RestartCount ?? 0) + 1;
      this.start(c.id, { byPolicy: true }).catch((err: Error) => {
        this.ctx.logger.warn(`restart of ${c.id.slice(0, 12)} failed: ${err.message}`);
        if (c.record.State.Status === 'restarting') transition(c.record.State, 'exited', { exitCode: c.record.State.ExitCode, error: err.message });
        c.save();
      });
    }, delayMs);
    timer.unref();
    c.restartTimer = timer;
    return true;
  }

  /** A start by the user resets the policy's count and cancels a pending restart. */
  resetForUserStart(c: Container): void {
    c.record.RestartCount = 0;
    c.record.ManuallyStopped = false;
    this.clearTimer(c);
  }

  /** A stop of a container waiting to be restarted: it stays down. Returns whether one was pending. */
  cancelPending(c: Container): boolean {
    if (!c.restartTimer) return false;
    this.clearTimer(c);
    c.record.ManuallyStopped = true;
    if (c.record.State.Status === 'restarting') transition(c.record.State, 'exited', { exitCode: c.record.State.ExitCode, error: c.record.State.Error });
    c.save();
    return true;
  }

  clearTimer(c: Container): void {
    if (c.restartTimer) clearTimeout(c.restartTimer);
    c.restartTimer = undefined;
  }

  /** After a daemon start: brings back containers whose policy says so. */
  onDaemonStart(): void {
    for (const c of this.ctx.registry.all()) {
      if (!c.running && restartsWithDaemon(c.record.HostConfig.RestartPolicy, !!c.record.ManuallyStopped)) {
        c.record.ManuallyStopped = false;
        this.start(c.id, { byPolicy: false }).catch((err: Error) => this.ctx.logger.warn(`restart of ${c.id.slice(0, 12)} at daemon start failed: ${err.message}`));
      }
    }
  }
}
