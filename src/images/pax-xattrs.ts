/**
 * Extended attributes of tar entries, read from the raw PAX headers
 * (`SCHILY.xattr.NAME=value`). tar-stream decodes PAX values as UTF-8, which
 * corrupts binary ones such as file capabilities, so this pass-through scanner
 * reads the same bytes as they go by and keeps each entry's xattrs, by entry
 * number, exactly as the image has them.
 */
import { Transform, type TransformCallback } from 'node:stream';

const BLOCK = 512;
const MAX_PAX = 1 << 20; // a PAX header larger than this is not read for xattrs

function octalOrBinary(field: Buffer): number {
  if (field[0]! & 0x80) {
    // base-256 (GNU): big-endian, the top bit of the first byte is a flag
    let n = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const s = field.toString('latin1').replace(/\0.*$/s, '').trim();
  return s ? parseInt(s, 8) : 0;
}

/** `len key=value\n` records; only xattr keys are kept, values as raw bytes. */
export function parsePaxXattrs(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    if (space < 0) break;
    const len = parseInt(data.subarray(i, space).toString('latin1'), 10);
    if (!Number.isInteger(len) || len <= 0 || i + len > data.length) break;
    const record = data.subarray(space + 1, i + len - 1); // without the trailing \n
    const eq = record.indexOf(0x3d);
    if (eq > 0) {
      const key = record.subarray(0, eq).toString('utf8');
      if (key.startsWith('SCHILY.xattr.')) out.set(key.slice('SCHILY.xattr.'.length), Buffer.from(record.subarray(eq + 1)));
    }
    i += len;
  }
  return out;
}

export class PaxXattrScanner extends Transform {
  /** Entry number (as tar-stream counts entries, from 0) → its xattrs. */
  readonly xattrs = new Map<number, Map<string, Buffer>>();
  private pending = Buffer.alloc(0);
  private skip = 0; // bytes of entry data (and padding) still to pass by
  private paxLeft = 0; // bytes of a PAX header still to collect
  private pax: Buffer[] = [];
  private paxForNext: Map<string, Buffer> | undefined;
  private entry = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.push(chunk);
    this.scan(chunk);
    cb();
  }

  private scan(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      if (this.paxLeft > 0) {
        const take = Math.min(this.paxLeft, buf.length);
        this.pax.push(buf.subarray(0, take));
        this.paxLeft -= take;
        buf = buf.subarray(take);
        if (this.paxLeft > 0) break;
        this.paxForNext = parsePaxXattrs(Buffer.concat(this.pax));
        this.pax = [];
        continue;
      }
      if (this.skip > 0) {
        const take = Math.min(this.skip, buf.length);
        this.skip -= take;
        buf = buf.subarray(take);
        if (this.skip > 0) break;
        continue;
      }
      if (buf.length < BLOCK) break;
      const header = buf.subarray(0, BLOCK);
      buf = buf.subarray(BLOCK);
      if (header.every((b) => b === 0)) continue; // end-of-archive blocks
      const size = octalOrBinary(header.subarray(124, 136));
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const type = String.fromCharCode(header[156]!);
      if (type === 'x' && size <= MAX_PAX) {
        // The PAX header of the next entry: collect it (its padding is skipped after).
        this.paxLeft = size;
        this.skip = padded - size;
        // paxLeft is consumed before skip by the loop order above.
        continue;
      }
      if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
        // Global headers and GNU long names/links describe, not make, an entry.
        this.skip = padded;
        continue;
      }
      if (this.paxForNext?.size) this.xattrs.set(this.entry, this.paxForNext);
      this.paxForNext = undefined;
      this.entry++;
      this.skip = padded;
    }
    this.pending = Buffer.from(buf);
  }
}
