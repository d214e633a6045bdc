/** The batching log writer (one write per batch, bounded queue, torn lines) and the streaming reader (tail from the end, follow across rotations), on real temp files. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { LogReader, readAllLines } from '../../src/engine/log-reader.js';
import { cutChunk, HIGH_WATER, LogWriter, type LogRecord } from '../../src/engine/logs.js';
import { muxFrame } from '../../src/api/docker/http.js';
import { logFrames } from '../../src/api/docker/routes/logs.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function tmpFile(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-logstream-'));
  dirs.push(d);
  return path.join(d, 'container.log');
}

async function drain(r: LogReader): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for (let rec = await r.next(); rec; rec = await r.next()) out.push(rec);
  return out;
}
const text = (recs: LogRecord[]) => Buffer.concat(recs.map((r) => r.data)).toString();
const numbered = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join('');

describe('batching log writer', () => {
  it('coalesces what comes in one tick into one write, asynchronously, in order', async () => {
    const file = tmpFile();
    const w = new LogWriter(file);
    const batches: number[] = [];
    w.on('batch', (recs) => batches.push(recs.length));
    for (let i = 1; i <= 1000; i++) w.write(i % 2 ? 'stdout' : 'stderr', Buffer.from(`${i}\n`));
    assert.equal(fs.statSync(file).size, 0, 'nothing written synchronously');
    await w.flushed();
    assert.deepEqual(batches, [1000], 'one batch for the whole tick');
    const lines = await readAllLines(file, w);
    assert.equal(lines.map((l) => l.data.toString()).join(''), numbered(1, 1000));
    assert.equal(lines[1]!.stream, 'stderr');
    w.close();
  });

  it('stores a chunk of many lines as few records, cut at line ends so rotation stays bounded', async () => {
    assert.deepEqual(cutChunk(Buffer.from('aa\nbb\ncc\n'), 6).map(String), ['aa\nbb\n', 'cc\n']);
    assert.deepEqual(cutChunk(Buffer.from('aaaaaaaa\nb'), 4).map(String), ['aaaaaaaa\n', 'b'], 'a long line stays whole');
    const file = tmpFile();
    const w = new LogWriter(file, { maxSize: 4000, maxFiles: 3 });
    w.write('stdout', Buffer.from(numbered(1, 3000)));
    await w.flushed();
    w.close();
    for (const f of ['container.log', 'container.log.1', 'container.log.2']) assert.ok(fs.statSync(path.join(path.dirname(file), f)).size <= 4000, f);
    const got = (await readAllLines(file)).map((l) => Number(l.data.toString()));
    assert.deepEqual(got, got.map((_, i) => got[0]! + i), 'in order');
    assert.equal(got.at(-1), 3000);
  });

  it('asks for backpressure past the high-water mark and lets go once written', async () => {
    const w = new LogWriter(tmpFile());
    const calls: boolean[] = [];
    w.onPressure = (on) => calls.push(on);
    const chunk = Buffer.alloc(64 * 1024, 'y');
    for (let i = 0; i * chunk.length <= HIGH_WATER; i++) w.write('stdout', chunk);
    assert.deepEqual(calls, [true]);
    assert.ok(w.backlog > HIGH_WATER);
    await w.flushed();
    assert.deepEqual(calls, [true, false]);
    assert.equal(w.backlog, 0);
    w.close();
  });

  it('keeps a torn last line (a daemon killed mid-write) from swallowing the next record', async () => {
    const file = tmpFile();
    const w1 = new LogWriter(file);
    w1.write('stdout', Buffer.from('before\n'));
    w1.close();
    fs.appendFileSync(file, '{"s":"stdout","t":"2024-01-01T00:00:00.000Z","b":"dG9y');
    const w2 = new LogWriter(file);
    w2.write('stdout', Buffer.from('after\n'));
    await w2.flushed();
    assert.equal((await readAllLines(file, w2)).map((l) => l.data.toString()).join(''), 'before\nafter\n');
    // The same under a writer that stays open (the container is started again): resync() sees it.
    fs.appendFileSync(file, '{"s":"std');
    w2.resync();
    w2.write('stdout', Buffer.from('again\n'));
    await w2.flushed();
    const r = await LogReader.open(file, w2, { tail: 2 });
    assert.equal(text(await drain(r)), 'after\nagain\n');
    r.close();
    w2.close();
  });

  it('writes what is queued when closed', async () => {
    const file = tmpFile();
    const w = new LogWriter(file);
    w.write('stdout', Buffer.from('last words\n'));
    w.close();
    assert.equal(text(await readAllLines(file)), 'last words\n');
  });
});

describe('streaming log reader', () => {
  async function sample(): Promise<{ file: string; w: LogWriter }> {
    const file = tmpFile();
    const w = new LogWriter(file, { maxSize: 20_000, maxFiles: 4 });
    // Old-format records (a line each) first, then chunks of many lines, some split across chunks.
    for (let i = 1; i <= 100; i++) w.write('stdout', Buffer.from(`${i}\n`));
    await w.flushed();
    const rest = numbered(101, 5000);
    for (let at = 0; at < rest.length; at += 777) w.write('stdout', Buffer.from(rest.slice(at, at + 777)));
    await w.flushed();
    return { file, w };
  }

  it('tails the last N lines from the end, inside a record too, across rotated files', async () => {
    const { file, w } = await sample();
    assert.ok(fs.existsSync(`${file}.1`), 'the sample rotated');
    for (const n of [1, 5, 333, 1234]) {
      const r = await LogReader.open(file, w, { tail: n, snapshot: true });
      assert.equal(text(await drain(r)), numbered(5001 - n, 5000), `tail ${n}`);
      r.close();
    }
    const none = await LogReader.open(file, w, { tail: 0, snapshot: true });
    assert.deepEqual(await drain(none), []);
    const all = await LogReader.open(file, undefined, { tail: 1_000_000, snapshot: true });
    const kept = text(await drain(all));
    assert.match(kept, /\n5000\n$/);
    assert.equal(kept, text(await readAllLines(file)), 'more than there is: all that is kept');
    w.close();
  });

  it('tails what the filter keeps, and counts an unterminated last line as a line', async () => {
    const file = tmpFile();
    const w = new LogWriter(file);
    w.write('stdout', Buffer.from('o1\no2\no3\n'));
    w.write('stderr', Buffer.from('e1\ne2\n'));
    w.write('stdout', Buffer.from('o4\npartial'));
    await w.flushed();
    const r = await LogReader.open(file, w, { tail: 3, filter: (rec) => rec.stream === 'stdout' });
    assert.equal(text(await drain(r)), 'o3\no4\npartial');
    r.close();
    w.close();
  });

  it('skips a torn last line when reading a stopped container\'s log', async () => {
    const { file, w } = await sample();
    w.close();
    fs.appendFileSync(file, '{"s":"stdout","t":"20');
    const r = await LogReader.open(file, undefined, { tail: 2 });
    assert.equal(text(await drain(r)), '4999\n5000\n');
    assert.match(text(await readAllLines(file)), /\n4999\n5000\n$/);
  });

  async function follow(maxSize: number): Promise<{ lines: number[]; generation: number }> {
    const file = tmpFile();
    const w = new LogWriter(file, { maxSize, maxFiles: 3 });
    w.write('stdout', Buffer.from(numbered(1, 100)));
    await w.flushed();
    const r = await LogReader.open(file, w, {});
    const got: LogRecord[] = [];
    got.push(...(await drain(r)));
    assert.ok(r.caughtUp());
    // The reader holds its file while the writer rotates past it.
    for (let i = 101; i <= 1000; i++) w.write('stdout', Buffer.from(`${i}\n`));
    assert.ok(!r.caughtUp() || w.backlog > 0);
    for (;;) {
      got.push(...(await drain(r)));
      if (r.caughtUp() && w.idle) break;
      await r.waitMore(50);
    }
    r.close();
    w.close();
    return { lines: text(got).split('\n').filter(Boolean).map(Number), generation: w.generation };
  }

  it('follows a live writer across rotations and says when it has caught up', async () => {
    const { lines, generation } = await follow(25_000);
    assert.ok(generation >= 2, `rotated ${generation} times`);
    assert.deepEqual(lines, numbered(1, 1000).split('\n').filter(Boolean).map(Number), 'everything, in order, nothing twice');
  });

  it('goes on from the oldest file kept when the writer rotated its files away', async () => {
    const { lines, generation } = await follow(3000);
    assert.ok(generation > 3);
    assert.ok(lines.every((n, i) => i === 0 || n > lines[i - 1]!), 'in order, nothing twice');
    assert.equal(lines[0], 1, 'the file it held is read to its end');
    assert.ok(lines.length < 1000, 'what was rotated away is skipped');
    assert.equal(lines.at(-1), 1000);
  });

  it('stops at the end it saw when asked for a snapshot', async () => {
    const file = tmpFile();
    const w = new LogWriter(file);
    w.write('stdout', Buffer.from('one\n'));
    const r = await LogReader.open(file, w, { snapshot: true });
    w.write('stdout', Buffer.from('two\n'));
    await w.flushed();
    assert.equal(text(await drain(r)), 'one\n');
    r.close();
    w.close();
  });
});

describe('log frames (the bytes of GET /containers/:id/logs)', () => {
  const recs: LogRecord[] = [
    { stream: 'stdout', time: '2026-12-02T08:00:00.000000001Z', data: Buffer.from('a\nbc\n') },
    { stream: 'stderr', time: '2026-12-02T08:00:01.000000001Z', data: Buffer.alloc(0) },
    { stream: 'stderr', time: '2026-12-02T08:00:02.000000001Z', data: Buffer.from('partial') },
  ];
  it('multiplexes a frame per record, or per line with timestamps, as muxFrame does', () => {
    const plain = logFrames({ tty: false, timestamps: false }, recs);
    assert.deepEqual(plain, Buffer.concat([muxFrame(1, recs[0]!.data), muxFrame(2, recs[2]!.data)]));
    const stamped = logFrames({ tty: false, timestamps: true }, recs);
    const line = (s: 1 | 2, r: LogRecord, text: string) => muxFrame(s, Buffer.from(`${r.time} ${text}`));
    assert.deepEqual(stamped, Buffer.concat([line(1, recs[0]!, 'a\n'), line(1, recs[0]!, 'bc\n'), line(2, recs[2]!, 'partial')]));
  });
  it('gives a tty\'s output as it is', () => {
    assert.equal(logFrames({ tty: true, timestamps: false }, recs).toString(), 'a\nbc\npartial');
    assert.equal(logFrames({ tty: true, timestamps: true }, recs.slice(0, 1)).toString(), `${recs[0]!.time} a\n${recs[0]!.time} bc\n`);
    assert.equal(logFrames({ tty: false, timestamps: false }, []).length, 0);
  });
});
