/**
 * The host's bookkeeping of output the agent keeps until acknowledged: positions,
 * the resend after a re-attach (nothing twice, gaps counted), acknowledgements
 * batched per event-loop turn, acknowledgement as the log has it, and the
 * position a log holds as recovery reads it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AckBatcher, OutputCursor } from '../../src/agent/output-acks.js';
import { GuestProcess } from '../../src/agent/process.js';
import { Fields, MsgType, Tag } from '../../src/agent/protocol.js';
import { acknowledgeLogged, loggedPosition } from '../../src/engine/log-acks.js';
import { LogWriter } from '../../src/engine/logs.js';

const turn = () => new Promise((r) => setImmediate(r));
/** A channel that records what is sent: [type, proc, offset]. */
function channel() {
  const sent: Array<[number, number, number | undefined]> = [];
  return { sent, send: (type: number, proc: number, payload?: Buffer) => void sent.push([type, proc, payload ? Fields.of(payload).u64(Tag.Offset) : undefined]) };
}
const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
function logFile(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-acks-'));
  dirs.push(d);
  return path.join(d, 'container.log');
}

describe('output cursor', () => {
  it('counts positions live, across both streams', () => {
    const c = new OutputCursor();
    assert.equal(c.take(Buffer.from('ab'))?.toString(), 'ab');
    assert.equal(c.take(Buffer.from('cde'))?.toString(), 'cde');
    assert.equal(c.position, 5);
  });

  it('after a re-attach: drops what comes before RESENT, skips what the log has, continues', () => {
    const c = new OutputCursor(5, true);
    assert.equal(c.take(Buffer.from('xyz')), undefined, 'before RESENT: dropped (the agent resends it)');
    assert.equal(c.resent(3), 0);
    assert.equal(c.take(Buffer.from('d')), undefined, 'position 3..4: the log has it');
    assert.equal(c.take(Buffer.from('efg'))?.toString(), 'fg', 'position 4 had, 5.. new');
    assert.equal(c.position, 7);
  });

  it('counts a gap when the agent kept less than the log lacks', () => {
    const c = new OutputCursor(2, true);
    assert.equal(c.resent(6), 4);
    assert.equal(c.take(Buffer.from('g'))?.toString(), 'g');
    assert.equal(c.position, 7);
  });
});

describe('acknowledgements', () => {
  it('are cumulative and one frame per event-loop turn, never backwards', async () => {
    const ch = channel();
    const acks = new AckBatcher(ch, 7);
    for (const p of [10, 30, 20]) acks.ack(p);
    assert.deepEqual(ch.sent, [], 'not sent synchronously');
    await turn();
    assert.deepEqual(ch.sent, [[MsgType.Ack, 7, 30]]);
    acks.ack(25);
    await turn();
    assert.equal(ch.sent.length, 1, 'an older position is not sent');
  });

  it('a process acknowledges on receipt, and its exit as one position past its output', async () => {
    const ch = channel();
    const p = new GuestProcess(3, ch);
    p.keepOutput();
    p.release();
    const got: Array<[string, number]> = [];
    p.on('stdout', (d, pos) => got.push([d.toString(), pos]));
    p.output('stdout', Buffer.from('hello\n'));
    p.output('stderr', Buffer.from('oops\n'));
    p.finish({ code: 0, signal: 0 });
    await turn();
    assert.deepEqual(got, [['hello\n', 6]]);
    assert.deepEqual(ch.sent, [[MsgType.Ack, 3, 12]], 'one ACK: 11 bytes and the exit');
  });

  it('an adopted process asks for a resend and drops output and exit until the answer', async () => {
    const ch = channel();
    const p = new GuestProcess(4, ch);
    p.keepOutput(100);
    assert.deepEqual(ch.sent, [[MsgType.Resend, 4, 100]]);
    p.ackByOwner();
    p.release();
    const got: string[] = [];
    p.on('stdout', (d) => got.push(d.toString()));
    p.output('stdout', Buffer.from('late'));
    assert.equal(p.resyncing, true, 'an EXIT now is dropped (the connection asks)');
    p.resent(98, 0);
    p.output('stdout', Buffer.from('xxnew'));
    await turn();
    assert.deepEqual(got, ['new']);
    assert.equal(ch.sent.length, 1, 'the owner acknowledges, not receipt');
  });

  it('a process the agent does not know (RESENT with ESRCH) ends as killed', () => {
    const p = new GuestProcess(5, channel());
    p.keepOutput(0);
    p.resent(undefined, 3);
    assert.deepEqual(p.exited, { code: 137, signal: 0 });
  });

  it('a process whose agent keeps nothing sends no acknowledgement', async () => {
    const ch = channel();
    const p = new GuestProcess(6, ch);
    p.release();
    p.output('stdout', Buffer.from('x'));
    p.finish({ code: 0, signal: 0 });
    await turn();
    assert.deepEqual(ch.sent, []);
  });
});

describe('acknowledged as logged', () => {
  it('acknowledges each write batch once it is in the file, the exit after the last one', async () => {
    const file = logFile();
    const log = new LogWriter(file);
    const ch = channel();
    const p = new GuestProcess(9, ch);
    p.keepOutput();
    acknowledgeLogged(p, log, 'run1');
    p.on('stdout', (d, pos) => log.write('stdout', d, { run: 'run1', position: pos }));
    p.release();
    p.output('stdout', Buffer.from('one\n'));
    p.output('stdout', Buffer.from('two\n'));
    assert.deepEqual(ch.sent, [], 'nothing acknowledged before it is written');
    await log.flushed();
    await turn();
    assert.deepEqual(ch.sent, [[MsgType.Ack, 9, 8]], 'one ACK for the batch');
    assert.equal(loggedPosition(file, 'run1'), 8);
    p.output('stdout', Buffer.from('three\n'));
    p.finish({ code: 0, signal: 0 });
    await log.flushed();
    await turn();
    await turn();
    assert.deepEqual(ch.sent.at(-1), [MsgType.Ack, 9, 15], 'the exit: 14 bytes logged, then one more');
    log.close();
  });
});

describe('logged position', () => {
  it("is the newest record's of the run, 0 for another run's, none or unmarked", () => {
    const file = logFile();
    assert.equal(loggedPosition(file, 'a'), 0, 'no file');
    fs.writeFileSync(file, '{"s":"stdout","t":"x","b":"aGk="}\n');
    assert.equal(loggedPosition(file, 'a'), 0, 'unmarked');
    fs.appendFileSync(file, '{"s":"stdout","t":"x","b":"aGk=","r":"a","o":40}\n');
    assert.equal(loggedPosition(file, 'a'), 40);
    assert.equal(loggedPosition(file, 'b'), 0, "a new run's output starts at 0");
  });

  it('passes over a torn last line, and reads the rotated file when the live one is empty', () => {
    const file = logFile();
    fs.writeFileSync(file, '{"s":"stdout","t":"x","b":"aGk=","r":"a","o":7}\n{"s":"stdout","t":"x","b":"aG');
    assert.equal(loggedPosition(file, 'a'), 7);
    fs.renameSync(file, `${file}.1`);
    fs.writeFileSync(file, '');
    assert.equal(loggedPosition(file, 'a'), 7);
  });

  it('marks each piece of a chunk cut into records with its own end', async () => {
    const file = logFile();
    const log = new LogWriter(file, { maxSize: 200, maxFiles: 50 });
    const chunk = Buffer.from('line one\nline two\nline three\n'.repeat(8));
    log.write('stdout', chunk, { run: 'r', position: 1000 + chunk.length });
    await log.flushed();
    log.close();
    const marks = [...Array.from({ length: 49 }, (_, i) => `${file}.${49 - i}`), file]
      .filter((f) => fs.existsSync(f))
      .flatMap((f) => fs.readFileSync(f, 'utf8').trim().split('\n'))
      .map((l) => JSON.parse(l) as { b: string; o: number });
    let pos = 1000;
    for (const m of marks) assert.equal(m.o, (pos += Buffer.from(m.b, 'base64').length));
    assert.equal(pos, 1000 + chunk.length);
  });
});
