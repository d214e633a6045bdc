/**
 * Live migration of a running VM whose root is on disks, over unix sockets
 * only (QEMU runs jailed under `spawn=deny` and never opens a network address):
 * the daemons relay each stream between their QEMU's socket and their link.
 *
 * Outgoing: the writable disk is mirrored (`blockdev-mirror`, sync=full) to an
 * NBD export of the destination's QEMU, and kept in step while RAM is
 * pre-copied (`migrate`) with the guest running. With `pause-before-switchover`
 * QEMU stops the guest before its last pass; the mirror, in step by then, is
 * completed (`block-job-cancel` of a ready job leaves the target a consistent
 * copy), and the migration finishes. Downtime is that last pass of RAM and
 * device state, plus the disk's last dirty blocks: libvirt's non-shared-storage
 * migration, by QMP. The read-only disk is not copied (the destination builds
 * the same image filesystem).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationSockets, MigrationStats } from '../driver.js';
import { migrationIn, type MigrateInfo, type Qmp } from './migration.js';

const TARGET = 'mig-target';
const JOB = 'mig-upper';
const EXPORT = 'mig-upper';
/** The disk that moves: the container's writable one (the lower is read-only and rebuilt there). */
const NODE = 'upper';

interface JobInfo {
  id: string;
  status: string;
  error?: string;
}

/** Polls CHECK until it returns a value (not undefined), or the deadline passes. */
async function until<T>(what: string, deadline: number, check: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} timed out`);
    await sleep(20);
  }
}

const job = async (qmp: Qmp): Promise<JobInfo | undefined> => ((await qmp('query-jobs')) as JobInfo[]).find((j) => j.id === JOB);

/**
 * Moves the running VM out: its disk to SOCKETS.disk (an NBD server behind it),
 * its RAM and device state to SOCKETS.ram. The daemon listens on both; QEMU
 * connects. On success the VM is stopped here (`postmigrate`); on failure
 * everything is undone and the VM runs on (cancelOutgoing).
 */
export async function migrateOut(qmp: Qmp, sockets: MigrationSockets, timeoutMs: number): Promise<MigrationStats> {
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  try {
    await qmp('blockdev-add', { driver: 'nbd', 'node-name': TARGET, server: { type: 'unix', path: sockets.disk }, export: NODE });
    await qmp('blockdev-mirror', { 'job-id': JOB, device: NODE, target: TARGET, sync: 'full', 'auto-dismiss': false });
    await until('the disk mirror', deadline, async () => {
      const j = await job(qmp);
      if (!j || j.status === 'concluded') throw new Error(`the disk mirror ended: ${j?.error ?? 'gone'}`);
      return j.status === 'ready' ? j : undefined;
    });
    const diskMs = Date.now() - t0;
    // A clone keeps the `x-ignore-shared` its restore set, which changes the stream's format: the
    // destination starts without it (its RAM is private anyway, so every page goes).
    await qmp('migrate-set-capabilities', {
      capabilities: [
        { capability: 'pause-before-switchover', state: true },
        { capability: 'x-ignore-shared', state: false },
      ],
    });
    await qmp('migrate', { uri: `unix:${sockets.ram}` });
    await migrationIn(qmp, ['pre-switchover'], deadline);
    // The guest is stopped: the mirror's last dirty blocks go, and the job ends without pivoting.
    await qmp('block-job-cancel', { device: JOB });
    const done = await until('the disk mirror to complete', deadline, async () => {
      const j = await job(qmp);
      return j?.status === 'concluded' ? j : undefined;
    });
    if (done.error) throw new Error(`the disk mirror failed: ${done.error}`);
    await qmp('migrate-continue', { state: 'pre-switchover' });
    const st = await migrationIn(qmp, ['completed'], deadline);
    await dropTarget(qmp);
    return { totalMs: Date.now() - t0, diskSyncMs: diskMs, downtimeMs: st.downtime ?? -1, ramBytes: st.ram?.transferred ?? 0 };
  } catch (err) {
    await cancelOutgoing(qmp).catch(() => undefined);
    throw err;
  }
}

async function dropTarget(qmp: Qmp): Promise<void> {
  const j = await job(qmp).catch(() => undefined);
  if (j) {
    if (j.status !== 'concluded') await qmp('block-job-cancel', { device: JOB, force: true }).catch(() => undefined);
    await until('the disk mirror to stop', Date.now() + 10_000, async () => ((await job(qmp))?.status === 'concluded' ? true : undefined)).catch(() => undefined);
    await qmp('job-dismiss', { id: JOB }).catch(() => undefined);
  }
  await qmp('blockdev-del', { 'node-name': TARGET }).catch(() => undefined);
}

/**
 * Undoes an outgoing migration at any point, even after it completed (the
 * destination then failed to take over): the stream and the mirror stop, and
 * the guest runs here again (QEMU resumes it on a cancel; a completed one is
 * resumed with `cont`, which takes its disks back).
 */
export async function cancelOutgoing(qmp: Qmp): Promise<void> {
  await qmp('migrate_cancel').catch(() => undefined);
  await until('the migration to stop', Date.now() + 10_000, async () => {
    const st = ((await qmp('query-migrate')) as MigrateInfo).status ?? 'none';
    return ['active', 'setup', 'pre-switchover', 'device', 'cancelling', 'postcopy-active'].includes(st) ? undefined : st;
  }).catch(() => undefined);
  await dropTarget(qmp);
  const status = ((await qmp('query-status')) as { status?: string }).status;
  if (status === 'postmigrate' || status === 'finish-migrate' || status === 'paused') await qmp('cont');
  await qmp('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] }).catch(() => undefined);
}

/**
 * The destination's side, on a QEMU started with `-incoming defer -S`: an NBD
 * export of its (empty, same-sized) writable disk and the incoming stream,
 * each on a unix socket QEMU listens on.
 */
export async function serveIncoming(qmp: Qmp, sockets: MigrationSockets): Promise<void> {
  await qmp('nbd-server-start', { addr: { type: 'unix', data: { path: sockets.disk } } });
  await qmp('block-export-add', { type: 'nbd', id: EXPORT, 'node-name': NODE, name: NODE, writable: true });
  await qmp('migrate-incoming', { uri: `unix:${sockets.ram}` });
}

/** Waits for the incoming migration to complete (the VM is then paused, -S) and stops the NBD server. */
export async function finishIncoming(qmp: Qmp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await until('the incoming migration', deadline, async () => {
    const st = ((await qmp('query-status')) as { status?: string }).status;
    if (st === 'paused') return true;
    if (st !== 'inmigrate') throw new Error(`the incoming VM is in state ${st}`);
    return undefined;
  });
  await qmp('block-export-del', { id: EXPORT }).catch(() => undefined);
  await qmp('nbd-server-stop').catch(() => undefined);
}
