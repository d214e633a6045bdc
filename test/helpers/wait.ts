/**
 * Waiting in tests: for a condition, with a deadline, never for a fixed time.
 * No VM or daemon here: the unit tier may import it.
 */

export interface WaitOptions {
  /** What is awaited, for the error message ("the page", "3 restarts"). */
  what: string;
  /** A deadline for failing, never part of what is asserted: at least MIN_WAIT_MS. */
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * The shortest deadline of a wait. Deadlines of 2-10 s were chosen on a quiet
 * machine; CI machines are up to 3x slower (TCG, 2 cores, other VMs booting), and a
 * condition that comes merely later is no defect. A passing wait returns as soon as
 * its condition holds, so only a failing one pays for the wider deadline.
 */
export const MIN_WAIT_MS = 30_000;

/**
 * Polls FN until it returns a truthy value (which is returned). A throw counts as
 * "not yet"; the last error is quoted if the deadline passes.
 */
export async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, opts: WaitOptions): Promise<T> {
  const timeoutMs = Math.max(opts.timeoutMs ?? MIN_WAIT_MS, MIN_WAIT_MS);
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}${why}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** The older spelling used across the VM tests: until(what, fn, timeoutMs). */
export function until<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = MIN_WAIT_MS): Promise<T> {
  return waitFor(fn, { what, timeoutMs });
}

/**
 * The opposite check: FN stays true for the whole window (polled), for the few
 * assertions that something does NOT happen (no output while paused). Fails as
 * soon as it turns false. The window is part of what is asserted, not a guess at
 * how long something takes.
 */
export async function holds(fn: () => Promise<boolean> | boolean, opts: { what: string; forMs: number; intervalMs?: number }): Promise<void> {
  const end = Date.now() + opts.forMs;
  for (;;) {
    if (!(await fn())) throw new Error(`no longer true: ${opts.what}`);
    if (Date.now() >= end) return;
    await sleep(Math.min(opts.intervalMs ?? 100, Math.max(0, end - Date.now())));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
