/**
 * A main process's output acknowledged to its agent as its log holds it, and,
 * after a crash, how much of a run's output the log holds: the position
 * ("o") of the newest record of that run ("r"), read from the end of the log
 * (the live file, or the newest rotated one if the live file holds no record
 * yet). A daemon re-attaching after a crash asks the agent to resend what is
 * past it (guest/PROTOCOL.md, "Output kept until acknowledged").
 *
 * Only the tail is read: a record is at most 64 KiB of output (about 88 KiB
 * as a line), so the newest whole record is in the last TAIL bytes. A torn
 * last line (a daemon killed mid-write) does not parse and is passed over;
 * its output was not acknowledged, so the agent still has it.
 */
import fs from 'node:fs';
import type { GuestProcess } from '../agent/connection.js';
import { logFileName, type LogRecord, type LogWriter } from './logs.js';

/**
 * Acknowledges MAIN's output (run RUN) as LOG has written it to the file: the
 * highest position of each write batch (a failed write too: that output is
 * not kept anywhere), and its exit once everything before it is written and
 * the exit recorded (the listeners before this one). Call before `release()`.
 */
export function acknowledgeLogged(main: GuestProcess, log: LogWriter, run: string): void {
  main.ackByOwner();
  const onBatch = (records: LogRecord[]) => {
    let last: number | undefined;
    for (const r of records) if (r.mark?.run === run) last = r.mark.position;
    if (last !== undefined) main.ack(last);
  };
  log.on('batch', onBatch);
  main.once('exit', () => {
    void log.flushed().then(() => {
      log.off('batch', onBatch);
      main.ackExit();
    });
  });
}

const TAIL = 256 * 1024;

/** The newest whole record's run and position in FILE: undefined if it has no record, null run if it is unmarked. */
function newestRecord(file: string): { run: string | null; position: number } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.max(0, size - TAIL);
    const buf = Buffer.alloc(size - start);
    const n = fs.readSync(fd, buf, 0, buf.length, start);
    const lines = buf.subarray(0, n).toString('latin1').split('\n');
    // The first line of a tail that starts mid-file may be partial: never trusted.
    for (let i = lines.length - 1; i >= (start > 0 ? 1 : 0); i--) {
      let r: { s?: unknown; b?: unknown; r?: unknown; o?: unknown };
      try {
        r = JSON.parse(lines[i]!) as typeof r;
      } catch {
        continue;
      }
      if (typeof r !== 'object' || r === null || typeof r.b !== 'string') continue;
      const marked = typeof r.r === 'string' && typeof r.o === 'number' && Number.isSafeInteger(r.o) && r.o >= 0;
      return marked ? { run: r.r as string, position: r.o as number } : { run: null, position: 0 };
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** The output position of RUN that the log at FILE holds (0 if none of it). */
export function loggedPosition(file: string, run: string): number {
  for (const index of [0, 1]) {
    const newest = newestRecord(logFileName(file, index));
    if (newest) return newest.run === run ? newest.position : 0;
  }
  return 0;
}
