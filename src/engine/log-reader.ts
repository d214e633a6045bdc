/**
 * Streaming reads of a container's log (see logs.ts for the format): records
 * come one at a time from 64 KiB reads, oldest first across rotated files, so
 * memory does not depend on the log's size. `tail` finds its start by reading
 * backwards from the end, counting lines. A reader of a live log follows the
 * writer's rotations by generation (the file it holds keeps its inode when it is
 * renamed) and tells when it has read everything written (`caughtUp`), which is
 * when a follower switches to the writer's `batch` events. A torn last line (a
 * daemon killed mid-write) is skipped.
 */
import fs from 'node:fs';
import { logFileName, splitLines, type LogRecord, type LogWriter, type StreamName } from './logs.js';

const CHUNK = 64 * 1024;
/** A line longer than this is not a record (garbage): it is skipped. */
const MAX_LINE = 16 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export interface LogReadOptions {
  /** Only the last N lines of what FILTER keeps (0: none of the history). */
  tail?: number;
  filter?: (rec: LogRecord) => boolean;
  /** Stop at what was written when the reader opened (not follow): a fast writer cannot keep it reading forever. */
  snapshot?: boolean;
}

/** Parses one stored line; undefined for anything that is not a record. */
export function parseRecord(line: string): LogRecord | undefined {
  try {
    const r = JSON.parse(line) as { s?: unknown; t?: unknown; b?: unknown };
    if ((r.s !== 'stdout' && r.s !== 'stderr') || typeof r.t !== 'string' || typeof r.b !== 'string') return undefined;
    return { stream: r.s as StreamName, time: r.t, data: Buffer.from(r.b, 'base64') };
  } catch {
    return undefined;
  }
}

/** Newlines in DATA. */
export function countNewlines(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) n++;
  return n;
}

/** DATA without its first N lines. */
function dropLines(data: Buffer, n: number): Buffer {
  let start = 0;
  for (let i = 0; i < n && start < data.length; i++) {
    const nl = data.indexOf(10, start);
    start = nl === -1 ? data.length : nl + 1;
  }
  return data.subarray(start);
}

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    /* already closed */
  }
}

/** Complete lines of the first SIZE bytes of FD, newest first, with their offsets (an unterminated tail is torn: skipped). */
async function* linesBackward(fd: number, size: number): AsyncGenerator<{ start: number; line: Buffer }> {
  let pos = size;
  let buf = EMPTY; // file bytes [pos, pos + buf.length) not yet yielded
  let tailDropped = false;
  for (;;) {
    if (pos > 0) {
      const len = Math.min(CHUNK, pos);
      const chunk = Buffer.alloc(len);
      const n = await readAt(fd, chunk, len, pos - len);
      if (n !== len) return; // truncated under us
      pos -= len;
      buf = buf.length ? Buffer.concat([chunk, buf]) : chunk;
    }
    if (!tailDropped) {
      const nl = buf.lastIndexOf(10);
      if (nl === -1) {
        if (pos > 0 && buf.length <= MAX_LINE) continue;
        return;
      }
      buf = buf.subarray(0, nl + 1);
      tailDropped = true;
    }
    let end = buf.length; // buf[end - 1] is a newline
    while (end > 0) {
      const prev = end >= 2 ? buf.lastIndexOf(10, end - 2) : -1;
      if (prev === -1 && pos > 0) break; // its start is in bytes not read yet
      yield { start: pos + prev + 1, line: buf.subarray(prev + 1, end - 1) };
      end = prev + 1;
    }
    buf = buf.subarray(0, end);
    if (pos === 0 || buf.length > MAX_LINE) return;
  }
}

export class LogReader {
  private fd = -1;
  /** Generation of the file held (see LogWriter.generation); the live file is the writer's. */
  private gen = 0;
  private offset = 0;
  private carry = EMPTY;
  private skipping = false;
  private out: LogRecord[] = [];
  /** Lines still to drop from the first record kept (tail starting inside a record). */
  private skip = 0;
  private limit: { gen: number; offset: number } | undefined;
  private readonly buf = Buffer.alloc(CHUNK);
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly writer: LogWriter | undefined,
    private readonly filter: (rec: LogRecord) => boolean,
  ) {}

  /** Opens FILE's log (WRITER: its live writer, if any) at the start of what OPTS ask for. */
  static async open(file: string, writer: LogWriter | undefined, opts: LogReadOptions = {}): Promise<LogReader> {
    const r = new LogReader(file, writer, opts.filter ?? (() => true));
    await writer?.flushed();
    // The end of the log now, as (generation, offset).
    const endGen = r.current;
    const endFd = r.openGen(endGen);
    if (endFd < 0) return r; // no log at all
    const endOffset = writer ? writer.size : fs.fstatSync(endFd).size;
    if (opts.snapshot) r.limit = { gen: endGen, offset: endOffset };
    if (opts.tail === undefined) {
      closeFd(endFd);
      r.startOldest();
    } else {
      await r.startTail(opts.tail, endFd, endGen, endOffset);
    }
    return r;
  }

  private get current(): number {
    return this.writer?.generation ?? 0;
  }

  /** Opens the file of generation GEN (-1 if it is gone). */
  private openGen(gen: number): number {
    try {
      return fs.openSync(logFileName(this.file, this.current - gen), 'r');
    } catch {
      return -1;
    }
  }

  private hold(fd: number, gen: number, offset: number): void {
    if (this.fd >= 0 && this.fd !== fd) closeFd(this.fd);
    this.fd = fd;
    this.gen = gen;
    this.offset = offset;
    this.carry = EMPTY;
    this.skipping = false;
  }

  /** Holds the oldest file still there, from its start, or the first file newer than AFTER. */
  private startOldest(after = -Infinity): void {
    let index = 0;
    while (fs.existsSync(logFileName(this.file, index + 1)) && this.current - (index + 1) > after) index++;
    const gen = this.current - index;
    const fd = this.openGen(gen);
    if (fd < 0) {
      if (this.fd >= 0) closeFd(this.fd);
      this.fd = -1;
      return;
    }
    this.hold(fd, gen, 0);
  }

  private async startTail(n: number, endFd: number, endGen: number, endOffset: number): Promise<void> {
    if (n <= 0) return this.hold(endFd, endGen, endOffset);
    // Lines end with a newline, wherever records were cut; an unterminated last line counts as one.
    // The start is just after the TARGETth newline from the end.
    let target: number | undefined;
    let oldest: { fd: number; gen: number } = { fd: endFd, gen: endGen };
    for (let gen = endGen, fd = endFd; fd >= 0; ) {
      const size = gen === endGen ? endOffset : fs.fstatSync(fd).size;
      for await (const { start, line } of linesBackward(fd, size)) {
        const rec = parseRecord(line.toString('latin1'));
        if (!rec || !rec.data.length || !this.filter(rec)) continue;
        target ??= rec.data[rec.data.length - 1] === 10 ? n + 1 : n;
        const newlines = countNewlines(rec.data);
        if (newlines < target) {
          target -= newlines;
          continue;
        }
        if (oldest.fd !== fd) closeFd(oldest.fd);
        this.hold(fd, gen, start);
        this.skip = newlines - target + 1;
        return;
      }
      if (oldest.fd !== fd) closeFd(oldest.fd);
      oldest = { fd, gen };
      gen--;
      fd = this.openGen(gen);
    }
    // Fewer lines than asked for: all of them.
    this.hold(oldest.fd, oldest.gen, 0);
  }

  /** The next record, or undefined when there is nothing more (for now, if the log is live). */
  async next(): Promise<LogRecord | undefined> {
    for (;;) {
      if (this.out.length) return this.out.shift();
      if (this.fd < 0 || this.closed) return undefined;
      let want = CHUNK;
      if (this.limit && this.gen >= this.limit.gen) want = Math.min(want, this.limit.offset - this.offset);
      const n = want > 0 ? await readAt(this.fd, this.buf, want, this.offset) : 0;
      if (this.closed) return undefined;
      if (n > 0) {
        this.offset += n;
        this.parse(this.buf.subarray(0, n));
        continue;
      }
      // The end of this file: a newer one follows if the writer rotated (and the snapshot goes that far).
      if (this.gen < this.current && !(this.limit && this.gen >= this.limit.gen)) {
        this.startOldest(this.gen);
        continue;
      }
      return undefined;
    }
  }

  private parse(chunk: Buffer): void {
    let data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    let start = 0;
    for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
      const line = data.subarray(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      const rec = parseRecord(line.toString('latin1'));
      if (!rec || !this.filter(rec)) continue;
      if (this.skip) {
        rec.data = dropLines(rec.data, this.skip);
        this.skip = 0;
      }
      this.out.push(rec);
    }
    data = data.subarray(start);
    if (data.length > MAX_LINE) {
      this.skipping = true;
      data = EMPTY;
    }
    // A copy: the read buffer is reused.
    this.carry = data.length ? Buffer.from(data) : EMPTY;
  }

  /** Everything the writer has written is read (checked synchronously: a follower subscribes to the writer right then). */
  caughtUp(): boolean {
    if (this.out.length) return false;
    if (!this.writer || this.fd < 0) return true;
    return this.gen === this.writer.generation && this.offset === this.writer.size;
  }

  /** Resolves when the writer has written more (or after MS at most). */
  waitMore(ms = 1000): Promise<void> {
    const w = this.writer;
    if (!w) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        w.off('batch', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      w.on('batch', done);
    });
  }

  close(): void {
    this.closed = true;
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }
}

/** Every record still kept, oldest first, as lines (small logs: tests, tools). */
export async function readAllLines(file: string, writer?: LogWriter): Promise<LogRecord[]> {
  const r = await LogReader.open(file, writer, { snapshot: true });
  const out: LogRecord[] = [];
  try {
    for (let rec = await r.next(); rec; rec = await r.next()) {
      for (const line of splitLines(rec.data)) out.push({ ...rec, data: line });
    }
  } finally {
    r.close();
  }
  return out;
}
