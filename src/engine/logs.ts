/**
 * Container logs: one JSON record per line of output, like Docker's json-file
 * driver, but binary-safe (base64 payload). Appends are synchronous so that a
 * reader that reads the file and then subscribes in the same tick misses nothing.
 *
 * Rotation (`--log-opt max-size=10m --log-opt max-file=3`, Docker's names) keeps
 * a container's logs bounded: container.log, container.log.1, ... oldest last.
 */
import fs from 'node:fs';

export type StreamName = 'stdout' | 'stderr';

export interface LogRecord {
  stream: StreamName;
  time: string;
  data: Buffer;
}

interface StoredRecord {
  s: StreamName;
  t: string;
  b: string;
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

export class LogWriter {
  private fd: number;
  private size: number;
  constructor(
    readonly file: string,
    private readonly rotation: LogRotation = DEFAULT_ROTATION,
  ) {
    this.fd = fs.openSync(file, 'a', 0o640);
    this.size = fs.fstatSync(this.fd).size;
  }

  write(stream: StreamName, data: Buffer): LogRecord[] {
    const time = new Date().toISOString();
    const records = splitLines(data).map((line) => ({ stream, time, data: line }));
    // Record by record, so one large burst of output is rotated like many small ones.
    let batch = '';
    try {
      for (const r of records) {
        const line = JSON.stringify({ s: r.stream, t: r.time, b: r.data.toString('base64') }) + '\n';
        if (this.size + batch.length > 0 && this.size + batch.length + line.length > this.rotation.maxSize) {
          if (batch) fs.writeSync(this.fd, batch);
          batch = '';
          this.rotate();
        }
        batch += line;
      }
      if (batch) fs.writeSync(this.fd, batch);
      this.size += batch.length;
    } catch {
      /* disk full: the output still reaches attached clients */
    }
    return records;
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    if (this.rotation.maxFiles <= 1) fs.rmSync(this.file, { force: true });
    else {
      fs.rmSync(`${this.file}.${this.rotation.maxFiles - 1}`, { force: true });
      for (let i = this.rotation.maxFiles - 2; i >= 1; i--) {
        if (fs.existsSync(`${this.file}.${i}`)) fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      }
      fs.renameSync(this.file, `${this.file}.1`);
    }
    this.fd = fs.openSync(this.file, 'a', 0o640);
    this.size = 0;
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

/** All records still kept, oldest first (rotated files, then the current one). */
export function readLogs(file: string): LogRecord[] {
  const rotated: string[] = [];
  for (let i = 1; fs.existsSync(`${file}.${i}`); i++) rotated.unshift(`${file}.${i}`);
  return [...rotated, file].flatMap(readLogFile);
}

function readLogFile(file: string): LogRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const r = JSON.parse(line) as StoredRecord;
      out.push({ stream: r.s, time: r.t, data: Buffer.from(r.b, 'base64') });
    } catch {
      /* a torn last line after a crash */
    }
  }
  return out;
}
