/**
 * Device state in and out of QEMU over a unix socket the daemon serves or
 * connects to, never `exec:` URIs: QEMU runs under a seccomp filter that
 * kills it if it tries to spawn a process (`-sandbox ...,spawn=deny`).
 */
import fs from 'node:fs';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { connectWhenReady } from '../../common/unix-socket.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { QmpClient } from './qmp.js';

async function waitMigration(qmp: QmpClient, deadline: number): Promise<void> {
  for (;;) {
    const st = (await qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
    if (st.status === 'completed') return;
    if (st.status === 'failed' || st.status === 'cancelled') throw new Error(`migration ${st.status}: ${st['error-desc'] ?? ''}`);
    if (Date.now() > deadline) throw new Error('migration timed out');
    await sleep(5);
  }
}

/** Saves a paused VM's device state to FILE: QEMU connects to SOCKET, the daemon writes what it sends. */
export async function saveState(qmp: QmpClient, socketPath: string, file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer();
  const received = new Promise<void>((resolve, reject) => {
    server.once('connection', (s) => {
      server.close(); // one stream only
      pipeline(s, fs.createWriteStream(file, { mode: 0o600 })).then(resolve, reject);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  try {
    await qmp.execute('migrate', { uri: `unix:${socketPath}` });
    await waitMigration(qmp, deadline);
    await Promise.race([received, sleep(Math.max(0, deadline - Date.now())).then(() => Promise.reject(new Error('the device state did not arrive')))]);
  } finally {
    server.close();
    fs.rmSync(socketPath, { force: true });
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
