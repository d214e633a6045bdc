/**
 * TAP devices for warm-pool VMs: made before any container exists, on no
 * bridge (the paused guest sends nothing), and moved onto the bridge of the
 * network the container that claims the VM is on.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { internal } from '../../common/errors.js';
import type { PoolNetProvider } from '../../vm/index.js';
import { deleteTap, disableIpv6 } from './bridge.js';

function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw internal(`ip ${args.join(' ')}: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
}

/** Pool TAPs named PREFIX + "p" + 8 hex digits (15 characters with a 6-character prefix). */
export function poolTapProvider(prefix: string): PoolNetProvider {
  return {
    create: () => {
      const tap = `${prefix}p${randomBytes(4).toString('hex')}`;
      ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
      disableIpv6(tap);
      return tap;
    },
    remove: (tap) => deleteTap(tap),
  };
}

/** Puts an existing TAP on BRIDGE and brings it up. */
export function moveTapTo(tap: string, bridge: string): void {
  ip(['link', 'set', tap, 'master', bridge, 'up']);
}
