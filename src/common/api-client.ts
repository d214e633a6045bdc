/**
 * A small Docker Engine API client over a unix socket or TCP (optionally TLS with
 * a client certificate): JSON requests, streamed responses, and hijacked
 * connections for attach/exec (the same wire protocol the docker CLI uses, so
 * `hyperbox` and `docker` are interchangeable clients).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Readable } from 'node:stream';
import type { DaemonAddress } from './paths.js';

/** TLS to the daemon: the CA that signed its certificate, and ours. */
export interface ClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function describe(a: DaemonAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `tcp://${a.host}:${a.port}`;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The daemon could not be reached at all. */
export class ConnectError extends Error {
  constructor(
    readonly where: string,
    readonly code: string | undefined,
  ) {
    super(`Cannot connect to the hyperbox daemon at ${where}. Is the hyperbox daemon running?`);
  }
}

const UNREACHABLE = ['ENOENT', 'ECONNREFUSED', 'EACCES', 'EHOSTUNREACH', 'ETIMEDOUT'];

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined | string[]>;
  body?: unknown;
  /** Raw body stream (e.g. an image tarball). */
  stream?: Readable;
  headers?: Record<string, string>;
}

function buildPath(p: string, query?: RequestOptions['query']): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined || v === false) continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else qs.append(k, v === true ? '1' : String(v));
  }
  const s = qs.toString();
  return `/v1.51${p}${s ? `?${s}` : ''}`;
}

async function readAll(res: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function errorFrom(status: number, body: Buffer): ApiError {
  let msg = body.toString('utf8').trim();
  try {
    msg = (JSON.parse(msg) as { message?: string }).message ?? msg;
  } catch {
    /* plain text */
  }
  return new ApiError(status, msg || `HTTP ${status}`);
}

export class ApiClient {
  constructor(
    readonly address: DaemonAddress,
    private readonly tls?: ClientTls,
  ) {}

  /** The unix socket path (the default daemon is started on one). */
  get socketPath(): string {
    if (this.address.kind !== 'unix') throw new Error('not a unix socket address');
    return this.address.path;
  }

  private connectError(err: NodeJS.ErrnoException): Error {
    return UNREACHABLE.includes(err.code ?? '') ? new ConnectError(describe(this.address), err.code) : err;
  }

  /** Where and how requests go: the socket, or host and port (with TLS when configured). */
  private send(options: http.RequestOptions, onResponse?: (res: http.IncomingMessage) => void): http.ClientRequest {
    const a = this.address;
    if (a.kind === 'unix') return http.request({ ...options, socketPath: a.path }, onResponse);
    const target = { ...options, host: a.host, port: a.port };
    if (!this.tls) return http.request(target, onResponse);
    return https.request({ ...target, ca: this.tls.ca, cert: this.tls.cert, key: this.tls.key, servername: net.isIP(a.host) ? undefined : a.host }, onResponse);
  }

  /** Starts a request and resolves with the response once its headers arrive. */
  open(method: string, p: string, opts: RequestOptions = {}): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      let payload: Buffer | undefined;
      if (opts.body !== undefined) {
        payload = Buffer.from(JSON.stringify(opts.body));
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(payload.length);
      }
      const req = this.send({ method, path: buildPath(p, opts.query), headers }, resolve);
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      if (opts.stream) opts.stream.pipe(req);
      else req.end(payload);
    });
  }

  async request<T = unknown>(method: string, p: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.open(method, p, opts);
    const body = await readAll(res);
    if ((res.statusCode ?? 500) >= 400) throw errorFrom(res.statusCode ?? 500, body);
    if (body.length === 0) return undefined as T;
    const text = body.toString('utf8');
    return ((res.headers['content-type'] ?? '').includes('json') ? JSON.parse(text) : text) as T;
  }

  /** A request whose response body is consumed as a stream (logs, events, wait). */
  async stream(method: string, p: string, opts: RequestOptions = {}): Promise<http.IncomingMessage> {
    const res = await this.open(method, p, opts);
    if ((res.statusCode ?? 500) >= 400) throw errorFrom(res.statusCode ?? 500, await readAll(res));
    return res;
  }

  /** Opens a hijacked connection (`Upgrade: tcp`) and returns the raw socket. */
  hijack(p: string, opts: { query?: RequestOptions['query']; body?: unknown } = {}): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
      const headers: Record<string, string> = { Connection: 'Upgrade', Upgrade: 'tcp' };
      if (payload) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(payload.length);
      }
      const req = this.send({ method: 'POST', path: buildPath(p, opts.query), headers });
      req.on('upgrade', (res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', async (res) => reject(errorFrom(res.statusCode ?? 500, await readAll(res))));
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      req.end(payload);
    });
  }
}

/** Splits Docker's multiplexed stream into stdout/stderr callbacks. */
export class Demuxer {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (stream: number, data: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + len) break;
      this.onFrame(this.buf[0]!, this.buf.subarray(8, 8 + len));
      this.buf = this.buf.subarray(8 + len);
    }
  }
}
