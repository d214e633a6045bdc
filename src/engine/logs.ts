/**
 * Container logs: JSON records, one a line, like Docker's json-file driver but
 * binary-safe (base64 payload): {"s":stream,"t":ISO time,"b":base64}; output of
 * a main process whose agent keeps it until acknowledged also carries
 * "r": the run (one per start) and "o": the position in that run's output
 * the record ends at, which a daemon re-attaching after a crash asks the agent
 * to resend from (log-acks.ts). A record
 * holds one chunk of output as it came from the guest (one or more lines, or a
 * partial one); readers split it into lines (log-reader.ts). Files written by
 * earlier versions hold one line per record and read the same.
 *
 * Writes are batched and asynchronous: output is queued and everything queued
 * while a write is in flight goes out in the next single write, so a container
 * printing as fast as it can costs one write per batch, not one per line, and
 * never blocks the daemon. The queue is bounded: past HIGH_WATER bytes the
 * writer asks its owner to stop reading the guest (`onPressure(true)`; the
 * engine pauses that VM's agent channel, so the guest's writes block and its
 * process waits on its pipe) and lets go below LOW_WATER. Nothing is dropped.
 *
 * Rotation (`--log-opt max-size=10m --log-opt max-file=3`, Docker's names) keeps
 * a container's logs bounded: container.log, container.log.1, ... oldest last.
 * `generation` counts the rotations, so a reader knows which file it holds.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';

export type StreamName = 'stdout' | 'stderr';

export interface LogRecord {
  stream: StreamName;
  time: string;
  data: Buffer;
  /** The run and output position this record ends at (see above). */
  mark?: LogMark;
}

export interface LogMark {
  run: string;
  position: number;
}

/** Splits output into lines (each keeping its "\n"; a trailing partial line too). */
export function splitLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, start)) {
    out.push(buf.subarray(start, i + 1));
    start = i + 1;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

export interface LogRotation {
  /** Bytes per file before rotating. */
  maxSize: number;
  /** Files kept, the current one included. */
  maxFiles: number;
}

/** Used when a container sets no log options: 20 MB x 5 files, never unbounded. */
export const DEFAULT_ROTATION: LogRotation = { maxSize: 20 * 1000 * 1000, maxFiles: 5 };

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i;

/** Parses Docker's json-file options; throws a message for bad values. */
export function parseLogOptions(config: Record<string, string> | undefined): LogRotation {
  const out = { ...DEFAULT_ROTATION };
  for (const [k, v] of Object.entries(config ?? {})) {
    if (k === 'max-size') {
      const m = SIZE_RE.exec(v.trim());
      if (!m) throw new Error(`invalid value for max-size: ${v}`);
      const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
      out.maxSize = Math.floor(Number(m[1]) * mult);
      if (out.maxSize < 1) throw new Error(`invalid value for max-size: ${v}`);
    } else if (k === 'max-file') {
      if (!/^[1-9]\d*$/.test(v)) throw new Error(`invalid value for max-file: ${v}`);
      out.maxFiles = Number(v);
    } else if (!['compress', 'labels', 'env', 'tag'].includes(k)) {
      throw new Error(`unknown log opt '${k}' for json-file log driver`);
    }
  }
  return out;
}

/** Queued output (bytes) past which the writer asks to stop reading the guest... */
export const HIGH_WATER = 1024 * 1024;
/** ...and below which it lets go again. */
export const LOW_WATER = 256 * 1024;
/** Largest payload of one record: a guest chunk is cut (at a line end if it has one) above this. */
const MAX_RECORD_DATA = 64 * 1024;
/** What a record's line costs beyond its base64 payload. */
const RECORD_OVERHEAD = 60;

/** The name of the INDEXth file: 0 is the live one, 1 the newest rotated one. */
export function logFileName(file: string, index: number): string {
  return index === 0 ? file : `${file}.${index}`;
}

/** Cuts DATA into pieces of at most CAP bytes, at line ends where there are any (a longer line stays whole). */
export function cutChunk(data: Buffer, cap: number): Buffer[] {
  if (data.length <= cap) return [data];
  const out: Buffer[] = [];
  let start = 0;
  while (data.length - start > cap) {
    let cut = data.lastIndexOf(10, start + cap - 1);
    if (cut < start) cut = data.indexOf(10, start + cap);
    if (cut === -1) break;
    out.push(data.subarray(start, cut + 1));
    start = cut + 1;
  }
  if (start < data.length) out.push(data.subarray(start));
  return out;
}

/** One write: the lines that go to the current file, after a rotation or not. */
interface Segment {
  rotate: boolean;
  lines: string[];
  len: number;
}

export class LogWriter extends EventEmitter<{ batch: [LogRecord[]] }> {
  /** Bytes in the current file, all of them on disk. */
  size = 0;
  /** Rotations since this writer opened the log. */
  generation = 0;
  /** Called with true when the queue passes HIGH_WATER and false when it is back under LOW_WATER. */
  onPressure: ((on: boolean) => void) | undefined;
  private fd: number;
  private queue: LogRecord[] = [];
  private queued = 0;
  private writing = false;
  private scheduled = false;
  private closed = false;
  private pressured = false;
  /** A failed write may have left a torn line: the next write starts a new one. */
  private torn = false;
  private idleWaiters: Array<() => void> = [];
  private readonly recordCap: number;

  constructor(
    readonly file: string,
    readonly rotation: LogRotation = DEFAULT_ROTATION,
  ) {
    super();
    this.setMaxListeners(0);
    this.fd = fs.openSync(file, 'a+', 0o640);
    this.recordCap = Math.max(1, Math.min(MAX_RECORD_DATA, Math.floor(((rotation.maxSize - RECORD_OVERHEAD) * 3) / 4)));
    this.resync();
  }

  /**
   * Takes the file as it is on disk (called when the container starts): its size,
   * and whether it ends in a torn line (a daemon killed mid-write, or an outside
   * change), which then stays alone on its line for readers to skip.
   */
  resync(): void {
    if (!this.idle || this.fd < 0) return;
    try {
      this.size = fs.fstatSync(this.fd).size;
      const last = Buffer.alloc(1);
      this.torn = this.size > 0 && fs.readSync(this.fd, last, 0, 1, this.size - 1) === 1 && last[0] !== 10;
    } catch {
      /* unreadable: keep what we knew */
    }
  }

  /** Queues output; it reaches the file within a tick or two, in order. The
   * 'batch' event then lists the records written (or whose write failed). */
  write(stream: StreamName, data: Buffer, mark?: LogMark): void {
    if (this.closed || data.length === 0) return;
    this.queue.push({ stream, time: new Date().toISOString(), data, mark });
    this.queued += data.length;
    if (!this.pressured && this.queued > HIGH_WATER) {
      this.pressured = true;
      this.onPressure?.(true);
    }
    if (!this.scheduled && !this.writing) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.flush();
      });
    }
  }

  /** Bytes queued or being written. */
  get backlog(): number {
    return this.queued;
  }

  /** Whether everything written so far is in the file (or failed to be). */
  get idle(): boolean {
    return !this.writing && !this.scheduled && this.queue.length === 0;
  }

  /** Resolves when everything queued until now is on disk. */
  flushed(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async flush(): Promise<void> {
    while (!this.writing && this.queue.length) {
      const records = this.queue.splice(0);
      this.writing = true;
      try {
        for (const seg of this.encode(records)) await this.put(seg, false);
      } catch {
        /* disk full: the output still reached attached clients and followers */
      }
      this.writing = false;
      this.done(records);
    }
    if (this.closed) this.closeFile();
    if (this.idle) for (const w of this.idleWaiters.splice(0)) w();
  }

  private done(records: LogRecord[]): void {
    for (const r of records) this.queued -= r.data.length;
    this.emit('batch', records);
    if (this.pressured && this.queued <= LOW_WATER && !this.closed) {
      this.pressured = false;
      this.onPressure?.(false);
    }
  }

  /** Records as lines, in segments cut where the file must rotate (record by record, as Docker does). */
  private encode(records: LogRecord[]): Segment[] {
    let cur: Segment = { rotate: false, lines: [], len: 0 };
    const segs = [cur];
    let used = this.size;
    for (const r of records) {
      let left = r.data.length;
      for (const piece of cutChunk(r.data, this.recordCap)) {
        left -= piece.length;
        const mark = r.mark && { r: r.mark.run, o: r.mark.position - left };
        const line = JSON.stringify({ s: r.stream, t: r.time, b: piece.toString('base64'), ...mark }) + '\n';
        if (used + cur.len > 0 && used + cur.len + line.length > this.rotation.maxSize) {
          cur = { rotate: true, lines: [], len: 0 };
          segs.push(cur);
          used = 0;
        }
        cur.lines.push(line);
        cur.len += line.length;
      }
    }
    return segs;
  }

  private async put(seg: Segment, sync: boolean): Promise<void> {
    if (seg.rotate) this.rotate();
    if (!seg.len) return;
    let buf = Buffer.from((this.torn ? '\n' : '') + seg.lines.join(''), 'latin1');
    this.torn = false;
    while (buf.length) {
      let n: number;
      try {
        n = sync ? fs.writeSync(this.fd, buf) : await writeAsync(this.fd, buf);
      } catch (err) {
        this.torn = true;
        throw err;
      }
      this.size += n;
      buf = buf.subarray(n);
    }
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    const { maxFiles } = this.rotation;
    if (maxFiles <= 1) fs.rmSync(this.file, { force: true });
    else {
      fs.rmSync(`${this.file}.${maxFiles - 1}`, { force: true });
      for (let i = maxFiles - 2; i >= 1; i--) {
        if (fs.existsSync(`${this.file}.${i}`)) fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      }
      fs.renameSync(this.file, `${this.file}.1`);
    }
    this.fd = fs.openSync(this.file, 'a+', 0o640);
    this.size = 0;
    this.torn = false;
    this.generation++;
  }

  /** Writes what is queued and closes the file: now, synchronously, unless a write is in flight (that flush finishes the queue). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pressured) {
      this.pressured = false;
      this.onPressure?.(false);
    }
    if (this.writing) return;
    const records = this.queue.splice(0);
    if (records.length) {
      // put() runs to completion synchronously when sync: its segments go out in order.
      for (const seg of this.encode(records)) this.put(seg, true).catch(() => undefined);
      this.done(records);
    }
    this.closeFile();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private closeFile(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = -1;
  }
}

function writeAsync(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))));
}
