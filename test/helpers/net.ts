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

/** True if nothing listens on 0.0.0.0:port (we can bind it ourselves). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '0.0.0.0', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}
