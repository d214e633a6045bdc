/** Small network probes the networking tests share. */
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

/**
 * A TCP port free right now on HOST (the kernel picks it: listen on port 0), for
 * tests that must publish a fixed host port. Never a literal port number: those
 * collide with whatever else runs on the machine.
 */
export async function freePort(host = '0.0.0.0'): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}
