import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Connects to a unix socket that may not exist yet (QEMU creates its sockets
 * after it starts), retrying every INTERVAL ms until DEADLINE (epoch ms).
 */
export async function connectWhenReady(socketPath: string, deadline: number, opts: { intervalMs?: number; signal?: AbortSignal; what?: string } = {}): Promise<net.Socket> {
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${opts.what ?? 'socket'} ${socketPath}: ${(err as Error).message}`);
      await sleep(opts.intervalMs ?? 5);
    }
  }
}
