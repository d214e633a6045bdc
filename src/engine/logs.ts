/**
 * Container logs: one JSON record per line of output, like Docker's json-file
 * driver, but binary-safe (base64 payload). Appends are synchronous so that a
 * reader that reads the file and then subscribes in the same tick misses nothing.
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

export class LogWriter {
  private fd: number;
  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'a', 0o640);
  }

  write(stream: StreamName, data: Buffer): LogRecord[] {
    const time = new Date().toISOString();
    const records = splitLines(data).map((line) => ({ stream, time, data: line }));
    const text = records.map((r) => JSON.stringify({ s: r.stream, t: r.time, b: r.data.toString('base64') }) + '\n').join('');
    try {
      fs.writeSync(this.fd, text);
    } catch {
      /* disk full: the output still reaches attached clients */
    }
    return records;
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

export function readLogs(file: string): LogRecord[] {
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
