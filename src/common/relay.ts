/**
 * Relays of a live migration's streams: each daemon copies bytes between its
 * QEMU's unix socket and the connection to the other daemon, so QEMU itself
 * never listens on or connects to a network address.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';

/** Copies A to B and B to A until either side ends or fails; then both are destroyed. Resolves when both are closed. */
export function splice(a: Duplex, b: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0;
    const onClose = () => {
      a.destroy();
      b.destroy();
      if (++closed === 2) resolve();
    };
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      from.pipe(to);
      from.once('error', () => to.destroy());
      from.once('close', onClose);
    }
  });
}

/** One unix socket QEMU connects to: `accepted` resolves with its connection (the only one taken). */
export interface OneShotSocket {
  accepted: Promise<net.Socket>;
  close(): void;
}

/** Listens on SOCKETPATH (mode 0600) for exactly one connection. */
export async function listenOnce(socketPath: string): Promise<OneShotSocket> {
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve, reject) => {
    server.once('connection', (s) => {
      server.close();
      resolve(s);
    });
    server.once('close', () => reject(new Error(`nothing connected to ${socketPath}`)));
  });
  accepted.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o600);
  return {
    accepted,
    close: () => {
      server.close();
      fs.rmSync(socketPath, { force: true });
    },
  };
}
