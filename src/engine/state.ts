/**
 * A container's lifecycle as an explicit state machine, and the per-container
 * operation lock that serialises the operations driving it.
 *
 *   created ──start──► running ◄──unpause── paused
 *      ▲                 │  └────pause─────►  │
 *      │                 ▼                    │
 *      └─(exit)───── exited ◄────(exit)───────┘
 *                  restarting (policy) ──start──► running
 *
 * Every change of `State` goes through `transition`, which refuses a move the
 * table does not allow (an internal error: a bug, not a user mistake).
 */
import { internal } from '../common/errors.js';
import type { ContainerState, ContainerStatus } from './types.js';

const ALLOWED: Record<ContainerStatus, ContainerStatus[]> = {
  created: ['running', 'exited'],
  running: ['paused', 'exited', 'running'],
  paused: ['running', 'exited'],
  restarting: ['running', 'exited'],
  exited: ['running', 'restarting', 'exited'],
  removing: [],
  dead: [],
};

export function canTransition(from: ContainerStatus, to: ContainerStatus): boolean {
  return ALLOWED[from].includes(to);
}

/** Moves STATE to TO, with the fields Docker shows for that state. */
export function transition(state: ContainerState, to: ContainerStatus, detail: { pid?: number; exitCode?: number; error?: string; oomKilled?: boolean } = {}): void {
  if (!canTransition(state.Status, to)) throw internal(`container state: ${state.Status} -> ${to} is not a valid transition`);
  const now = new Date().toISOString();
  switch (to) {
    case 'running':
      if (state.Status === 'paused') Object.assign(state, { Status: 'running', Paused: false });
      else
        Object.assign(state, {
          Status: 'running',
          Running: true,
          Paused: false,
          OOMKilled: false,
          Pid: detail.pid ?? 0,
          ExitCode: 0,
          Error: '',
          StartedAt: now,
          FinishedAt: '0001-01-01T00:00:00Z',
        });
      return;
    case 'paused':
      Object.assign(state, { Status: 'paused', Paused: true });
      return;
    case 'exited':
      Object.assign(state, {
        Status: 'exited',
        Running: false,
        Paused: false,
        OOMKilled: !!detail.oomKilled,
        Pid: 0,
        ExitCode: detail.exitCode ?? state.ExitCode,
        Error: detail.error ?? '',
        FinishedAt: now,
      });
      return;
    case 'restarting':
      state.Status = 'restarting';
      return;
    default:
      state.Status = to;
  }
}

/**
 * Serialises the operations on one container (start, stop, restart, remove,
 * pause): each waits for the previous one to finish, so no operation sees
 * another half done. Signals (`kill`) and reads do not take it.
 */
export class OperationLock {
  private tail: Promise<unknown> = Promise.resolve();
  private running: string | undefined;
  private queued = 0;

  /** The operation holding the lock, if any (for error messages and `ps`). */
  get current(): string | undefined {
    return this.running;
  }

  get idle(): boolean {
    return this.running === undefined && this.queued === 0;
  }

  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.tail.then(async () => {
      this.queued--;
      this.running = name;
      try {
        return await fn();
      } finally {
        this.running = undefined;
      }
    });
    // The chain goes on whether or not this operation failed.
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every operation queued so far has finished. */
  async settled(): Promise<void> {
    await this.tail;
  }
}
