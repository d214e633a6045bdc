/**
 * HTTP plumbing for the Docker-compatible API: a request context that works the
 * same for ordinary requests and for upgraded (hijacked) connections, JSON
 * bodies with a size bound, and Docker's error format.
 */
import type http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import type { z } from 'zod';
import { errorMessage, errorStatus, invalid } from '../../common/errors.js';

export const API_VERSION = '1.51';
export const MIN_API_VERSION = '1.24';
const MAX_JSON_BODY = 4 * 1024 * 1024;

/**
 * Output a streaming client (attach, logs -f, exec) may leave unread before it
 * is cut off: a client that stops reading must not grow the daemon's memory
 * (the container keeps running; its log has everything).
 */
export const MAX_CLIENT_BACKLOG = 16 * 1024 * 1024;

/** Writes D unless the client is MAX_CLIENT_BACKLOG behind; then it is disconnected. Returns whether it was written. */
export function writeBounded(out: NodeJS.WritableStream & { writableLength: number; destroy(): void }, d: Buffer | string): boolean {
  if (out.writableLength > MAX_CLIENT_BACKLOG) {
    out.destroy();
    return false;
  }
  out.write(d);
  return true;
}

/** Resolves once OUT is below its high-water mark again (or gone): a reader's way to honour backpressure. */
export function drained(out: NodeJS.WritableStream & { writableNeedDrain: boolean; destroyed: boolean }): Promise<void> {
  if (!out.writableNeedDrain || out.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

/** A bidirectional stream to a client: the hijacked socket, or a chunked response. */
export interface ClientStream {
  input: Readable;
  write(data: Buffer): void;
  /** Resolves when the client has taken what was written (history before live output). */
  drained(): Promise<void>;
  end(): void;
  /** Called when the client goes away completely (not on a half-close). */
  onClose(fn: () => void): void;
}

export class Ctx {
  params: Record<string, string | undefined> = {};
  readonly query: URLSearchParams;
  readonly path: string;
  apiVersion = API_VERSION;
  private answered = false;

  constructor(
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse | undefined,
    readonly socket: Duplex | undefined,
    private head: Buffer | undefined,
    readonly commonHeaders: Record<string, string>,
  ) {
    const url = new URL(req.url ?? '/', 'http://hyperbox');
    this.query = url.searchParams;
    this.path = url.pathname;
  }

  get upgraded(): boolean {
    return this.socket !== undefined;
  }

  /** Docker's boolean query values: "1", "true", "True". */
  bool(name: string, dflt = false): boolean {
    const v = this.query.get(name);
    if (v === null || v === '') return dflt;
    return !['0', 'false', 'False', 'no'].includes(v);
  }

  int(name: string): number | undefined {
    const v = this.query.get(name);
    if (v === null || v === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw invalid(`invalid value for ${name}: ${v}`);
    return n;
  }

  async rawBody(limit = MAX_JSON_BODY): Promise<Buffer> {
    if (this.socket) return this.upgradedBody(limit);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of this.req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > limit) throw invalid(`request body larger than ${limit} bytes`);
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  }

  /** On an upgraded connection the body (Content-Length bytes) is followed by the
   * raw stream: read exactly the body and leave the rest for hijack(). */
  private upgradedBody(limit: number): Promise<Buffer> {
    const expected = Number(this.req.headers['content-length'] ?? '0') || 0;
    if (expected > limit) throw invalid(`request body larger than ${limit} bytes`);
    const sock = this.socket!;
    let buf: Buffer = this.head ?? Buffer.alloc(0);
    const finish = (): Buffer => {
      this.head = buf.subarray(expected);
      return buf.subarray(0, expected);
    };
    if (buf.length >= expected) return Promise.resolve(finish());
    return new Promise((resolve, reject) => {
      const onData = (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= expected) {
          cleanup();
          sock.pause();
          resolve(finish());
        }
      };
      const onEnd = () => (cleanup(), reject(invalid('connection closed before the request body was complete')));
      const cleanup = () => {
        sock.off('data', onData);
        sock.off('end', onEnd);
      };
      sock.on('data', onData);
      sock.on('end', onEnd);
      sock.resume();
    });
  }

  async json<T>(schema: z.ZodType<T>, optional = false): Promise<T> {
    const raw = await this.rawBody();
    if (raw.length === 0) {
      if (optional) return schema.parse({});
      throw invalid('request body is empty');
    }
    let data: unknown;
    try {
      data = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      throw invalid(`invalid JSON: ${(err as Error).message}`);
    }
    const r = schema.safeParse(data ?? {});
    if (!r.success) throw invalid(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    return r.data;
  }

  send(status: number, body?: unknown, contentType = 'application/json'): void {
    if (this.answered) return;
    this.answered = true;
    const payload =
      body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body) + '\n');
    const headers: Record<string, string | number> = { ...this.commonHeaders };
    if (body !== undefined) headers['Content-Type'] = contentType;
    if (this.res) {
      this.res.writeHead(status, { ...headers, 'Content-Length': payload.length });
      this.res.end(this.req.method === 'HEAD' ? undefined : payload);
    } else if (this.socket) {
      const lines = [`HTTP/1.1 ${status} ${statusText(status)}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${payload.length}`, 'Connection: close'];
      this.socket.end(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), payload]));
    }
  }

  sendError(err: unknown): void {
    const status = errorStatus(err);
    if (status === 304) return this.send(304);
    this.send(status, { message: errorMessage(err) });
  }

  /** Starts a long-lived response (wait, logs, events): headers are flushed now. */
  beginStream(contentType: string): http.ServerResponse {
    if (!this.res) throw new Error('beginStream on an upgraded connection');
    this.answered = true;
    this.res.writeHead(200, { ...this.commonHeaders, 'Content-Type': contentType });
    this.res.flushHeaders();
    return this.res;
  }

  /**
   * Docker's JSON message stream (pull, push, load): one object per line.
   * An error after the headers went out travels in-band, as
   * {"errorDetail":{"message":m},"error":m}, which the docker CLI reports.
   */
  beginJsonMessages(): { send(msg: Record<string, unknown>): void; fail(err: unknown): void; end(): void } {
    const res = this.beginStream('application/json');
    return {
      send: (msg) => void res.write(JSON.stringify(msg) + '\r\n'),
      fail: (err) => {
        const message = errorMessage(err);
        res.write(JSON.stringify({ errorDetail: { message }, error: message }) + '\r\n');
      },
      end: () => void res.end(),
    };
  }

  /** Takes over an upgraded connection as it is: the socket, for a byte relay (a live migration's streams). */
  hijackRaw(): Duplex {
    if (!this.socket) throw invalid('this endpoint needs a connection upgrade (Connection: Upgrade, Upgrade: tcp)');
    this.answered = true;
    const headers = Object.entries(this.commonHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    this.socket.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: application/octet-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n${headers}\r\n`);
    if (this.head?.length) this.socket.unshift(this.head);
    return this.socket;
  }

  /** Takes over the connection for raw bidirectional streaming (attach, exec start). */
  hijack(contentType: string): ClientStream {
    this.answered = true;
    if (this.socket) {
      const sock = this.socket;
      // The client half-closes when it has no more input (docker run without -i). Over
      // TLS that is a close_notify, which must not end our half: output is still coming.
      (sock as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
      const headers = Object.entries(this.commonHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      sock.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n${headers}\r\n`);
      const input = new PassThrough();
      if (this.head?.length) input.write(this.head);
      sock.pipe(input);
      let closed = false;
      return {
        input,
        write: (d) => {
          if (!closed) writeBounded(sock, d);
        },
        drained: () => drained(sock as Duplex & { writableNeedDrain: boolean }),
        end: () => {
          if (closed) return;
          closed = true;
          sock.end();
        },
        onClose: (fn) => sock.once('close', fn),
      };
    }
    const res = this.res!;
    res.writeHead(200, { ...this.commonHeaders, 'Content-Type': contentType });
    res.flushHeaders();
    return {
      input: this.req,
      write: (d) => {
        if (!res.writableEnded) writeBounded(res, d);
      },
      drained: () => drained(res),
      end: () => {
        if (!res.writableEnded) res.end();
      },
      onClose: (fn) => res.once('close', fn),
    };
  }
}

function statusText(status: number): string {
  return (
    { 200: 'OK', 201: 'Created', 204: 'No Content', 304: 'Not Modified', 400: 'Bad Request', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error', 501: 'Not Implemented' }[status] ??
    'Status'
  );
}

/** The 8-byte header of Docker's multiplexed stream: [stream, 0, 0, 0, size(be32)]. */
export function muxFrame(stream: 0 | 1 | 2 | 3, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt8(stream, 0);
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

/** Docker's `filters` query parameter: {"key":["v"]} or the older {"key":{"v":true}}. */
export function parseFilters(ctx: Ctx): Record<string, string[]> {
  const raw = ctx.query.get('filters');
  if (!raw) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw invalid(`invalid filter '${raw}'`);
  }
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    out[k] = Array.isArray(v) ? v.map(String) : Object.keys(v as object);
  }
  return out;
}
