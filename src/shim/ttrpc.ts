/**
 * A ttrpc server over a unix socket (containerd's RPC between it and its
 * shims). A frame is a 10-byte header (payload length u32 BE, stream id u32 BE,
 * type u8: 1 request, 2 response; flags u8) and a protobuf ttrpc.Request or
 * ttrpc.Response. Requests on one connection are served concurrently (Wait
 * blocks for as long as the process runs) and answered on their stream id.
 */
import fs from 'node:fs';
import net from 'node:net';
import { decode, encode } from './proto.js';

export const HEADER_LENGTH = 10;
/** ttrpc's own bound on a message (messageLengthMax). */
export const MAX_MESSAGE = 4 << 20;
export const FrameType = { Request: 1, Response: 2 } as const;

/** gRPC status codes containerd maps back to its errdefs. */
export const Code = {
  OK: 0, Cancelled: 1, Unknown: 2, InvalidArgument: 3, NotFound: 5, AlreadyExists: 6,
  FailedPrecondition: 9, Unimplemented: 12, Internal: 13, Unavailable: 14,
} as const;

/** An error a handler throws to answer with that status. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export const unimplemented = (what: string) => new RpcError(Code.Unimplemented, `${what} is not implemented by the hyperbox shim`);

export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  payload: Buffer;
}

export function encodeFrame(f: Omit<Frame, 'flags'> & { flags?: number }): Buffer {
  const head = Buffer.alloc(HEADER_LENGTH);
  head.writeUInt32BE(f.payload.length, 0);
  head.writeUInt32BE(f.streamId, 4);
  head.writeUInt8(f.type, 8);
  head.writeUInt8(f.flags ?? 0, 9);
  return Buffer.concat([head, f.payload]);
}

/** Reassembles frames from arbitrary chunks; throws on a frame over MAX_MESSAGE. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Frame[] = [];
    while (this.buf.length >= HEADER_LENGTH) {
      const length = this.buf.readUInt32BE(0);
      if (length > MAX_MESSAGE) throw new RpcError(Code.InvalidArgument, `ttrpc frame of ${length} bytes exceeds the ${MAX_MESSAGE}-byte limit`);
      if (this.buf.length < HEADER_LENGTH + length) break;
      out.push({
        streamId: this.buf.readUInt32BE(4),
        type: this.buf.readUInt8(8),
        flags: this.buf.readUInt8(9),
        payload: this.buf.subarray(HEADER_LENGTH, HEADER_LENGTH + length),
      });
      this.buf = this.buf.subarray(HEADER_LENGTH + length);
    }
    return out;
  }
}

/** A method: request bytes in, response bytes out (or an RpcError). */
export type Handler = (payload: Buffer) => Promise<Buffer>;

interface TtrpcRequest {
  service: string;
  method: string;
  payload: Buffer;
}

export class TtrpcServer {
  private readonly methods = new Map<string, Handler>();
  private readonly server = net.createServer((sock) => this.serve(sock));
  private readonly sockets = new Set<net.Socket>();

  /** Registers HANDLERS (method name -> handler) under SERVICE. */
  register(service: string, handlers: Record<string, Handler>): void {
    for (const [method, h] of Object.entries(handlers)) this.methods.set(`${service}/${method}`, h);
  }

  listen(socketPath: string): Promise<void> {
    fs.rmSync(socketPath, { force: true });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => {
        fs.chmodSync(socketPath, 0o600);
        resolve();
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  /** Answers one request: its handler's payload, or a status. */
  async dispatch(req: TtrpcRequest): Promise<Buffer> {
    const h = this.methods.get(`${req.service}/${req.method}`);
    try {
      if (!h) throw new RpcError(Code.Unimplemented, `${req.service}/${req.method} is not implemented`);
      return encode('ttrpc.Response', { payload: await h(req.payload) });
    } catch (err) {
      const code = err instanceof RpcError ? err.code : Code.Unknown;
      return encode('ttrpc.Response', { status: { code, message: (err as Error).message } });
    }
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    const decoder = new FrameDecoder();
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch {
        sock.destroy(); // an oversized frame: the stream cannot be resynchronised
        return;
      }
      for (const f of frames) {
        if (f.type !== FrameType.Request) continue;
        let req: TtrpcRequest;
        try {
          req = decode<TtrpcRequest>('ttrpc.Request', f.payload);
        } catch {
          sock.destroy();
          return;
        }
        void this.dispatch(req).then((payload) => {
          if (!sock.destroyed) sock.write(encodeFrame({ streamId: f.streamId, type: FrameType.Response, payload }));
        });
      }
    });
  }
}
