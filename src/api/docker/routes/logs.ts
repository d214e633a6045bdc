/**
 * GET /containers/:id/logs, and the history part of attach (logs=1). The log is
 * read in chunks and written as the client takes it (backpressure), so a large
 * log costs neither the daemon's memory nor its event loop; `tail` starts from
 * the end; `follow` reads the file until it has caught up with the writer, then
 * takes the writer's batches as they are written (a client that stops reading
 * is cut off at MAX_CLIENT_BACKLOG, see writeBounded) until the container stops.
 */
import { invalid } from '../../../common/errors.js';
import type { Container } from '../../../engine/container.js';
import type { Engine } from '../../../engine/engine.js';
import { LogReader } from '../../../engine/log-reader.js';
import { splitLines, type LogRecord } from '../../../engine/logs.js';
import { drained, MAX_CLIENT_BACKLOG, writeBounded, type ClientStream } from '../http.js';
import type { RouteTable } from '../server.js';

/** Bytes of frames gathered before one write to the client. */
const WRITE_CHUNK = 64 * 1024;

interface LogFormat {
  tty: boolean;
  timestamps: boolean;
}

/** Docker's multiplexed-stream header for DATA (stream 1: stdout, 2: stderr). */
function writeHeader(out: Buffer, at: number, stream: LogRecord['stream'], length: number): void {
  out.writeUInt32BE(stream === 'stdout' ? 0x01000000 : 0x02000000, at);
  out.writeUInt32BE(length, at + 4);
}

/**
 * RECORDS as Docker sends them: a frame per line with timestamps, else a frame
 * per record. Built in one buffer (no copy per frame): a streamed log's garbage
 * is what keeps the daemon's memory up while a client reads it.
 */
export function logFrames(fmt: LogFormat, records: LogRecord[]): Buffer {
  const pieces: Array<{ stream: LogRecord['stream']; prefix: string; data: Buffer }> = [];
  let size = 0;
  for (const rec of records) {
    if (!rec.data.length) continue;
    const lines = fmt.timestamps ? splitLines(rec.data) : [rec.data];
    const prefix = fmt.timestamps ? `${rec.time} ` : '';
    for (const data of lines) {
      pieces.push({ stream: rec.stream, prefix, data });
      size += (fmt.tty ? 0 : 8) + prefix.length + data.length;
    }
  }
  if (fmt.tty && !fmt.timestamps && pieces.length === 1) return pieces[0]!.data; // as it is: no copy
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const { stream, prefix, data } of pieces) {
    if (!fmt.tty) {
      writeHeader(out, at, stream, prefix.length + data.length);
      at += 8;
    }
    at += out.write(prefix, at, 'latin1');
    at += data.copy(out, at);
  }
  return out;
}

/** Copies what READER has now to the client, a chunk at a time, waiting whenever the client is behind. */
async function pump(reader: LogReader, fmt: LogFormat, write: (b: Buffer) => void, drain: () => Promise<void>, gone: () => boolean): Promise<void> {
  let pending: LogRecord[] = [];
  let size = 0;
  const flush = async () => {
    const buf = logFrames(fmt, pending);
    pending = [];
    size = 0;
    if (buf.length) write(buf);
    await drain();
  };
  for (let rec = await reader.next(); rec && !gone(); rec = await reader.next()) {
    pending.push(rec);
    size += rec.data.length;
    if (size >= WRITE_CHUNK) await flush();
  }
  if (pending.length && !gone()) await flush();
}

function wantRecord(streams: { stdout: boolean; stderr: boolean }, since: number): (rec: LogRecord) => boolean {
  return (rec) => streams[rec.stream] && (!since || Date.parse(rec.time) / 1000 >= since);
}

export function logRoutes(r: RouteTable, engine: Engine): void {
  r.add('GET', '/containers/:id/logs', async (ctx) => {
    const c = engine.registry.get(ctx.params.id!);
    const streams = { stdout: ctx.bool('stdout'), stderr: ctx.bool('stderr') };
    if (!streams.stdout && !streams.stderr) throw invalid('You must choose at least one stream');
    const fmt = { tty: c.record.Config.Tty, timestamps: ctx.bool('timestamps') };
    const follow = ctx.bool('follow');
    const tailArg = ctx.query.get('tail');
    let tail: number | undefined;
    if (tailArg && tailArg !== 'all') {
      tail = Number(tailArg);
      if (!Number.isInteger(tail) || tail < 0) throw invalid(`invalid tail value: ${tailArg}`);
    }
    const want = wantRecord(streams, Number(ctx.query.get('since') ?? 0));
    const reader = await LogReader.open(c.logFile, c.log, { tail, filter: want, snapshot: !follow });
    const res = ctx.beginStream(fmt.tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
    let gone = false;
    res.once('close', () => {
      gone = true;
      reader.close();
    });
    const copy = () =>
      pump(
        reader,
        fmt,
        (b) => void res.write(b),
        () => drained(res),
        () => gone,
      );
    await copy();
    while (follow && !gone) {
      if (!c.running || !c.log) {
        await c.log?.flushed();
        await copy();
        break;
      }
      // Checked and subscribed in one go: nothing is written in between.
      if (reader.caughtUp()) return followLive(c, reader, fmt, want, res);
      await reader.waitMore();
      await copy();
    }
    reader.close();
    if (!gone) res.end();
  });
}

/** From now on, C's output as its writer writes it; the response ends when C stops. */
function followLive(c: Container, reader: LogReader, fmt: LogFormat, want: (rec: LogRecord) => boolean, res: NodeJS.WritableStream & { writableLength: number; writableEnded: boolean; destroy(): void }): void {
  reader.close();
  const log = c.log!;
  const onBatch = (records: LogRecord[]) => {
    const buf = logFrames(fmt, records.filter(want));
    if (buf.length) writeBounded(res, buf);
  };
  const onExit = () => void log.flushed().then(finish);
  const finish = () => {
    log.off('batch', onBatch);
    c.off('exit', onExit);
    if (!res.writableEnded) res.end();
  };
  log.on('batch', onBatch);
  c.on('exit', onExit);
  res.once('close', finish);
}

/** Where an attached client's output goes. */
export interface AttachSink {
  write(b: Buffer): void;
  end(): void;
}

/**
 * attach with logs=1: C's log so far, then its live output. The history is a
 * snapshot taken right before REGISTER attaches the client; live output (and its
 * end) is held, up to MAX_CLIENT_BACKLOG, until the history is out, so nothing
 * is missed, sent twice or sent out of order.
 */
export async function attachWithHistory(
  c: Container,
  stream: ClientStream,
  streams: { stdout: boolean; stderr: boolean },
  register: (sink: AttachSink) => void,
): Promise<void> {
  const fmt = { tty: c.record.Config.Tty, timestamps: false };
  let gone = false;
  let reader: LogReader | undefined;
  stream.onClose(() => {
    gone = true;
    reader?.close();
  });
  reader = await LogReader.open(c.logFile, c.log, { filter: wantRecord(streams, 0), snapshot: true });
  if (gone) return reader.close();
  let held: Buffer[] | undefined = [];
  let heldSize = 0;
  let endHeld = false;
  try {
    register({
      write: (b) => {
        if (!held) return stream.write(b);
        held.push(b);
        heldSize += b.length;
        if (heldSize > MAX_CLIENT_BACKLOG) {
          held = [];
          endHeld = true;
          gone = true;
        }
      },
      end: () => {
        if (held) endHeld = true;
        else stream.end();
      },
    });
    await pump(reader, fmt, (b) => stream.write(b), () => stream.drained(), () => gone);
  } finally {
    reader.close();
    for (const b of held ?? []) stream.write(b);
    held = undefined;
    if (endHeld) stream.end();
  }
}
