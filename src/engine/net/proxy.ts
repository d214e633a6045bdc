/**
 * Published ports of containers on bridge networks: a userland proxy on the
 * host port relaying to the container's address (Docker's docker-proxy), for
 * TCP and UDP. The user-mode network does this inside QEMU (hostfwd); a TAP
 * has no such thing.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { PortForward } from '../../vm/index.js';

const UDP_IDLE_MS = 60_000;
/** Client connections of one published TCP port at once (further ones are refused), and how long one may idle. */
export const MAX_TCP_CONNECTIONS = 1024;
export const TCP_IDLE_MS = 60 * 60_000;
/** Client flows of one UDP port at once; datagrams of further new clients are dropped. */
const MAX_UDP_FLOWS = 256;

export class PortProxy {
  private constructor(private readonly closers: Array<() => void>) {}

  static async open(forwards: PortForward[], target: string): Promise<PortProxy> {
    const closers: Array<() => void> = [];
    try {
      for (const f of forwards) closers.push(f.proto === 'tcp' ? await tcp(f, target) : await udp(f, target));
    } catch (err) {
      for (const c of closers) c();
      throw err;
    }
    return new PortProxy(closers);
  }

  close(): void {
    for (const c of this.closers.splice(0)) c();
  }
}

async function tcp(f: PortForward, target: string): Promise<() => void> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(f.guestPort, target);
    sockets.add(client).add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    // A connection nobody uses for an hour goes (a guest cannot pin the daemon's sockets forever).
    client.setTimeout(TCP_IDLE_MS, done);
    upstream.setTimeout(TCP_IDLE_MS, done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.maxConnections = MAX_TCP_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: f.hostIp, port: f.hostPort, exclusive: true }, () => resolve());
  });
  return () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
}

async function udp(f: PortForward, target: string): Promise<() => void> {
  const server = dgram.createSocket('udp4');
  // One upstream socket per client address, so replies find their way back.
  const flows = new Map<string, { socket: dgram.Socket; timer?: NodeJS.Timeout }>();
  server.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let flow = flows.get(key);
    if (!flow && flows.size >= MAX_UDP_FLOWS) return;
    if (!flow) {
      const socket = dgram.createSocket('udp4');
      socket.on('message', (reply) => server.send(reply, from.port, from.address));
      socket.on('error', () => undefined);
      flow = { socket };
      flows.set(key, flow);
    }
    clearTimeout(flow.timer);
    const current = flow;
    flow.timer = setTimeout(() => {
      current.socket.close();
      flows.delete(key);
    }, UDP_IDLE_MS).unref();
    flow.socket.send(msg, f.guestPort, target);
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.bind(f.hostPort, f.hostIp, () => resolve());
  });
  return () => {
    server.close();
    for (const fl of flows.values()) {
      clearTimeout(fl.timer);
      fl.socket.close();
    }
    flows.clear();
  };
}
