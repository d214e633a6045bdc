/**
 * Host side of the hyperbox agent protocol (version 1), documented in
 * guest/PROTOCOL.md. Pure encoding/decoding: no I/O here.
 *
 * Everything that comes from the guest is untrusted: frames are bounded, the
 * version is checked, and TLV fields are length-checked before use.
 */
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 12;
export const MAX_PAYLOAD = 65536;
/** The guest buffers at most this much stdin per process; we never send more unacknowledged. */
export const STDIN_WINDOW = 65536;

export const MsgType = {
  Hello: 0x01,
  Result: 0x02,
  Started: 0x30,
  StartFailed: 0x31,
  Stdout: 0x32,
  Stderr: 0x33,
  Exit: 0x34,
  StdinWindow: 0x35,
  Pong: 0x36,
  /** The position a resend starts at (OFFSET), or ERRNO: no such process, or one that keeps nothing. */
  Resent: 0x37,
  Configure: 0x20,
  MountRoot: 0x21,
  Ping: 0x22,
  Poweroff: 0x23,
  Stats: 0x24,
  Limits: 0x25,
  /** A migrated VM's new bridge endpoint: eth0 renumbered, a root's /etc/hosts and resolv.conf rewritten. */
  Readdress: 0x26,
  Start: 0x10,
  Stdin: 0x11,
  StdinEof: 0x12,
  Signal: 0x13,
  Resize: 0x14,
  /** Output up to OFFSET is the host's (a process started with ACKED). */
  Ack: 0x15,
  /** After a re-attach: the host has output up to OFFSET; answered by RESENT and what is kept past it. */
  Resend: 0x16,
} as const;

export const Tag = {
  Version: 1,
  Message: 2,
  Errno: 3,
  Pid: 4,
  Status: 5,
  Signal: 6,
  Count: 7,
  Hostname: 8,
  Time: 9,
  Seed: 10,
  MountTag: 11,
  Name: 12,
  Arg: 13,
  Env: 14,
  Cwd: 15,
  User: 16,
  Tty: 17,
  Rows: 18,
  Cols: 19,
  Stdin: 20,
  Subdir: 21,
  Meminfo: 22,
  CpuStat: 23,
  Uptime: 24,
  Process: 25,
  Ipv4: 26,
  Gateway: 27,
  Dns: 28,
  Tmpfs: 29,
  MemLimit: 30,
  Oom: 31,
  Mac: 32,
  Isolate: 33,
  ExtraHost: 34,
  CapAdd: 35,
  CapDrop: 36,
  Privileged: 37,
  Init: 38,
  Exec: 39,
  BlockLower: 40,
  BlockUpper: 41,
  Bind: 42,
  ReadOnly: 43,
  Tool: 44,
  CpuMax: 45,
  CpuWeight: 46,
  PidsMax: 47,
  Sysctl: 48,
  MaskPath: 49,
  RoPath: 50,
  Seccomp: 51,
  NoNewPrivs: 52,
  DiscardOnExit: 53,
  /** MOUNT_ROOT of a template: mount the upper disk's ext4 ahead (BLOCK_UPPER alone). */
  Premount: 54,
  /** MOUNT_ROOT of a block root whose upper disk is a copy of the one mounted ahead. */
  Premounted: 55,
  GroupAdd: 60,
  /** START: keep this process's output until acknowledged; STARTED: the agent does. */
  Acked: 61,
  /** u64 position in a process's output (ACK, RESEND, RESENT). */
  Offset: 62,
} as const;

export interface Frame {
  type: number;
  proc: number;
  payload: Buffer;
}

export class ProtocolError extends Error {}

export function encodeFrame(type: number, proc: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new ProtocolError(`frame payload too large: ${payload.length}`);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt8(type, 4);
  header.writeUInt8(PROTOCOL_VERSION, 5);
  header.writeUInt32BE(proc >>> 0, 8);
  return Buffer.concat([header, payload]);
}

/** Incremental frame decoder. `push` returns complete frames; it throws
 * ProtocolError on an oversized frame or a wrong version, after which the
 * channel must be considered broken. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    let off = 0;
    while (this.buf.length - off >= HEADER_SIZE) {
      const len = this.buf.readUInt32BE(off);
      const version = this.buf.readUInt8(off + 5);
      if (len > MAX_PAYLOAD) throw new ProtocolError(`guest sent an oversized frame (${len} bytes)`);
      if (version !== PROTOCOL_VERSION) throw new ProtocolError(`guest speaks protocol version ${version}, expected ${PROTOCOL_VERSION}`);
      if (this.buf.length - off < HEADER_SIZE + len) break;
      frames.push({
        type: this.buf.readUInt8(off + 4),
        proc: this.buf.readUInt32BE(off + 8),
        payload: Buffer.from(this.buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len)),
      });
      off += HEADER_SIZE + len;
    }
    this.buf = this.buf.subarray(off);
    return frames;
  }
}

export type TlvValue = string | number | bigint | Buffer | boolean;

/** Encodes [tag, value] pairs; numbers are u32, bigints u64, booleans u32 0/1. */
export function encodeTlv(fields: Array<[number, TlvValue]>): Buffer {
  const parts: Buffer[] = [];
  for (const [tag, value] of fields) {
    let data: Buffer;
    if (typeof value === 'string') data = Buffer.from(value, 'utf8');
    else if (typeof value === 'boolean' || typeof value === 'number') {
      data = Buffer.alloc(4);
      data.writeUInt32BE(typeof value === 'boolean' ? Number(value) : value >>> 0);
    } else if (typeof value === 'bigint') {
      data = Buffer.alloc(8);
      data.writeBigUInt64BE(value);
    } else data = value;
    const head = Buffer.alloc(5);
    head.writeUInt8(tag, 0);
    head.writeUInt32BE(data.length, 1);
    parts.push(head, data);
  }
  const out = Buffer.concat(parts);
  if (out.length > MAX_PAYLOAD) throw new ProtocolError('request too large for one frame');
  return out;
}

export function decodeTlv(payload: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let off = 0;
  while (off < payload.length) {
    if (payload.length - off < 5) throw new ProtocolError('truncated TLV header');
    const tag = payload.readUInt8(off);
    const len = payload.readUInt32BE(off + 1);
    if (len > payload.length - off - 5) throw new ProtocolError('TLV field overruns its frame');
    out.push([tag, payload.subarray(off + 5, off + 5 + len)]);
    off += 5 + len;
  }
  return out;
}

/** Typed view over decoded fields, with bounds on what we accept. */
export class Fields {
  constructor(private readonly fields: Array<[number, Buffer]>) {}
  static of(payload: Buffer): Fields {
    return new Fields(decodeTlv(payload));
  }
  u32(tag: number): number | undefined {
    const f = this.fields.find(([t, d]) => t === tag && d.length === 4);
    return f ? f[1].readUInt32BE(0) : undefined;
  }
  /** A u64 field as a number (positions stay far below 2^53). */
  u64(tag: number): number | undefined {
    const f = this.fields.find(([t, d]) => t === tag && d.length === 8);
    return f ? Number(f[1].readBigUInt64BE(0)) : undefined;
  }
  str(tag: number, max = 4096): string | undefined {
    const f = this.fields.find(([t]) => t === tag);
    return f ? f[1].subarray(0, max).toString('utf8') : undefined;
  }
  /** Every field with this tag, as text (at most `limit` of them). */
  strs(tag: number, max = 4096, limit = 4096): string[] {
    return this.fields.filter(([t]) => t === tag).slice(0, limit).map(([, d]) => d.subarray(0, max).toString('utf8'));
  }
}
