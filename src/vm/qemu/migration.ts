/**
 * Device state in and out of QEMU over a unix socket the daemon serves or
 * connects to, never `exec:` URIs: QEMU runs under a seccomp filter that
 * kills it if it tries to spawn a process (`-sandbox ...,spawn=deny`).
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenOnce } from '../../common/relay.js';
import { connectWhenReady } from '../../common/unix-socket.js';
import type { QmpClient } from './qmp.js';

/** One QMP command: a QmpClient's, or a VM's own connection's. */
export type Qmp = (command: string, args?: Record<string, unknown>) => Promise<unknown>;

export interface MigrateInfo {
  status?: string;
  'error-desc'?: string;
  downtime?: number;
  'total-time'?: number;
  ram?: { transferred?: number };
}

/** Waits for an outgoing migration to reach one of WANTED; a failed or cancelled one throws. */
export async function migrationIn(qmp: Qmp, wanted: string[], deadline: number): Promise<MigrateInfo> {
  for (;;) {
    const st = (await qmp('query-migrate')) as MigrateInfo;
    if (st.status === 'failed' || st.status === 'cancelled') throw new Error(`migration ${st.status}${st['error-desc'] ? `: ${st['error-desc']}` : ''}`);
    if (wanted.includes(st.status ?? '')) return st;
    if (Date.now() > deadline) throw new Error(`migration (${wanted.join(', ')}) timed out`);
    await sleep(5);
  }
}

/** Saves a paused VM's device state to FILE: QEMU connects to SOCKET, the daemon writes what it sends. */
export async function saveState(qmp: QmpClient, socketPath: string, file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const socket = await listenOnce(socketPath);
  const received = socket.accepted.then((s) => pipeline(s, fs.createWriteStream(file, { mode: 0o600 })));
  received.catch(() => undefined); // awaited below, unless the migration failed first
  try {
    await qmp.execute('migrate', { uri: `unix:${socketPath}` });
    await migrationIn((c, a) => qmp.execute(c, a), ['completed'], deadline);
    await Promise.race([received, sleep(Math.max(0, deadline - Date.now())).then(() => Promise.reject(new Error('the device state did not arrive')))]);
  } finally {
    socket.close();
  }
}

/** Loads FILE into a VM started with `-incoming defer`: QEMU listens on SOCKET, the daemon sends the state. */
export async function loadState(qmp: QmpClient, socketPath: string, file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await qmp.execute('migrate-incoming', { uri: `unix:${socketPath}` });
  const sock = await connectWhenReady(socketPath, deadline, { intervalMs: 2, what: 'incoming migration socket' });
  // The state is small (device state only: RAM is the shared file). QEMU may
  // close its end as soon as it has read the end-of-stream marker, before our
  // side finished: whether the load worked is told by the VM's status, which
  // the caller waits for.
  const state = await fs.promises.readFile(file);
  await new Promise<void>((resolve) => {
    setTimeout(resolve, Math.max(0, deadline - Date.now())).unref();
    sock.once('close', () => resolve());
    sock.once('error', () => resolve());
    sock.end(state);
  });
}
