/**
 * A short-lived helper VM for a *stopped* container on block storage: the
 * host never mounts the container's disks, so reading its files (`cp` out,
 * `export`) boots a guest (a clone when templates are on) with the image's
 * filesystem and the container's upper disk assembled as usual (read-only
 * unless the caller writes: `cp` in),
 * with no network, no volumes and no process of the container's; the caller's
 * tool runs, and the VM is powered off. The container's operation lock is held
 * from before the boot until the caller's stream is done: a `start` waits, so
 * the container and a helper never have its upper disk at once.
 */
import path from 'node:path';
import { ROOT_NAME, startSandbox, type Sandbox } from '../sandbox/sandbox.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { diskBytesOf } from './create-spec.js';

/** What a use of a guest gives: its result now, and when it is done with the guest (a stream's end). */
export interface GuestUse<T> {
  result: T;
  done: Promise<unknown>;
}

/** How long a helper may take to power off (unmount the upper disk cleanly) before it is killed. */
const POWEROFF_GRACE_MS = 10_000;

/**
 * Runs USE on the container's root in a helper VM, under the container's
 * lock. If the container started while the lock was awaited, RUNNING is used
 * instead (its own guest). Resolves with USE's result; the VM lives on until
 * its `done`.
 */
export function withHelperGuest<T>(
  ctx: EngineContext,
  c: Container,
  what: string,
  use: (sandbox: Sandbox, root: string) => Promise<GuestUse<T>>,
  running: () => Promise<T>,
  opts: { writable?: boolean } = {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    c.lock
      .run(what, async () => {
        if (c.running) return resolve(await running());
        const sandbox = await startHelper(ctx, c, !!opts.writable);
        try {
          const { result, done } = await use(sandbox, ROOT_NAME);
          resolve(result);
          await done.catch(() => undefined);
        } finally {
          await powerOff(sandbox);
        }
      })
      .catch(reject);
  });
}

async function startHelper(ctx: EngineContext, c: Container, writable: boolean): Promise<Sandbox> {
  const lower = await ctx.blocks.ensureImageFs(ctx.store.resolve(c.record.ImageId));
  const upper = await ctx.blocks.ensureContainerDisk(c.dir, c.record.DiskBytes ?? diskBytesOf(c.record.HostConfig));
  const hc = c.record.HostConfig;
  return startSandbox({
    driver: ctx.driver,
    // Not the container's run directory: a stray helper is swept at the daemon's next start like any VM nobody owns.
    runDir: path.join(ctx.runRoot, `files-${c.id.slice(0, 12)}`),
    // the container's own shape: its clone template serves the helper too
    shape: { ...ctx.guestShape(hc.Memory ? Math.max(128, Math.ceil(hc.Memory / 1048576) + 64) : undefined, Math.max(1, Math.ceil(hc.NanoCpus / 1e9))), root: 'disks' },
    hostname: c.record.Config.Hostname,
    rootfs: '',
    bootTimeoutMs: ctx.opts.bootTimeoutMs,
    clone: ctx.opts.clone,
    net: { forwards: [], restrict: true },
    disks: { files: { lower, upper }, binds: [], readonly: !writable },
  });
}

/** POWEROFF (the agent unmounts the upper disk cleanly), then the VM is released either way. */
async function powerOff(sandbox: Sandbox): Promise<void> {
  try {
    sandbox.agent.poweroff();
    await Promise.race([sandbox.waitExit(), new Promise((r) => setTimeout(r, POWEROFF_GRACE_MS).unref())]);
  } finally {
    sandbox.release();
  }
}
