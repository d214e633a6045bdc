/**
 * Restart policies, Docker's rules: `no`, `always`, `unless-stopped`,
 * `on-failure[:N]`. A container stopped by its user stays stopped; restarts back
 * off exponentially (100 ms doubling, capped at 1 min) and the delay resets once
 * a run lasted 10 s.
 */
import type { RestartPolicy } from './types.js';

export const NO_RESTART: RestartPolicy = { Name: '', MaximumRetryCount: 0 };

export function shouldRestart(policy: RestartPolicy | undefined, exitCode: number, restartCount: number, manuallyStopped: boolean): boolean {
  if (!policy || manuallyStopped) return false;
  switch (policy.Name) {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure':
      return exitCode !== 0 && (policy.MaximumRetryCount === 0 || restartCount < policy.MaximumRetryCount);
    default:
      return false;
  }
}

/** Whether the daemon starts this container again when it itself starts. */
export function restartsWithDaemon(policy: RestartPolicy | undefined, manuallyStopped: boolean): boolean {
  if (!policy) return false;
  // Docker: "always" comes back even after a manual stop once the daemon restarts.
  return policy.Name === 'always' || (policy.Name === 'unless-stopped' && !manuallyStopped);
}

export function restartDelayMs(restartCount: number, lastRunMs: number): number {
  if (lastRunMs >= 10_000) return 100;
  return Math.min(60_000, 100 * 2 ** Math.min(restartCount, 10));
}

export function validateRestartPolicy(policy: RestartPolicy, autoRemove: boolean): string | undefined {
  if (autoRemove && policy.Name !== '' && policy.Name !== 'no') return 'conflicting options: cannot specify both --restart and --rm';
  if (policy.MaximumRetryCount && policy.Name !== 'on-failure') return `maximum retry count cannot be used with restart policy '${policy.Name}'`;
  return undefined;
}
