/** Small network probes the networking tests share. */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/** GETs a URL and resolves with the body (rejects if nothing answers). */
export function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** True if nothing listens on host:port (we can bind it ourselves). */
export function portFree(port: number, host = '0.0.0.0'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** The kernel's ephemeral port range: where it picks the local ports of outgoing connections. */
function ephemeralPorts(): [number, number] {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && high) return [low, high];
  } catch {
    /* not Linux: the usual range */
  }
  return [32768, 60999];
}

/**
 * A TCP port free right now on HOST, for tests that must publish a fixed host port.
 * Never a literal port number: those collide with whatever else runs on the machine.
 * Nor one the kernel picks (listen on port 0): that comes from the ephemeral range,
 * where every outgoing connection (a QEMU's, a client's, another test's) also takes its
 * local port, and the port is bound only later (a daemon starting, a container's -p):
 * a busy machine had time to hand it out. A random port below that range is not.
 */
export async function freePort(host = '0.0.0.0'): Promise<number> {
  const [low, high] = ephemeralPorts();
  // Below the range if there is room (the usual case), else above it.
  const [from, to] = low > 12_000 ? [10_000, low] : [high + 1, 65_536];
  for (let i = 0; i < 200; i++) {
    const port = crypto.randomInt(from, to);
    if ((await portFree(port, host)) && (host === '0.0.0.0' || (await portFree(port)))) return port;
  }
  throw new Error(`no free TCP port in ${from}-${to - 1} on ${host}`);
}
