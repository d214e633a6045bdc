/** Container log options (json-file's max-size/max-file), line splitting, and rotation on disk. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { readAllLines } from '../../src/engine/log-reader.js';
import { DEFAULT_ROTATION, LogWriter, parseLogOptions, splitLines } from '../../src/engine/logs.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-logs-'));
  dirs.push(d);
  return d;
}

describe('log options', () => {
  it('defaults to bounded logs (20 MB x 5) when none are given', () => {
    assert.deepEqual(parseLogOptions(undefined), { maxSize: 20_000_000, maxFiles: 5 });
    assert.deepEqual(parseLogOptions({}), DEFAULT_ROTATION);
    assert.notEqual(parseLogOptions({}), DEFAULT_ROTATION, 'a copy: callers cannot change the default');
  });

  it('reads max-size in Docker units (decimal k, m, g; b optional; fractions)', () => {
    const size = (v: string) => parseLogOptions({ 'max-size': v }).maxSize;
    assert.equal(size('100'), 100);
    assert.equal(size('2k'), 2000);
    assert.equal(size('2kb'), 2000);
    assert.equal(size('10m'), 10_000_000);
    assert.equal(size('10M'), 10_000_000);
    assert.equal(size('1g'), 1_000_000_000);
    assert.equal(size('1.5m'), 1_500_000);
    assert.equal(size(' 3 k '), 3000);
    assert.equal(parseLogOptions({ 'max-size': '2k' }).maxFiles, 5, 'max-file keeps its default');
  });

  it('reads max-file as a whole number from 1', () => {
    assert.equal(parseLogOptions({ 'max-file': '1' }).maxFiles, 1);
    assert.equal(parseLogOptions({ 'max-file': '12' }).maxFiles, 12);
    for (const v of ['0', '-1', '1.5', 'x', '', '01']) assert.throws(() => parseLogOptions({ 'max-file': v }), new RegExp(`invalid value for max-file: ${v}`), v);
  });

  it('refuses bad sizes and unknown options, and ignores the json-file options it has no use for', () => {
    for (const v of ['lots', '', '-1m', '1t', '0', '0.0001k', 'm']) assert.throws(() => parseLogOptions({ 'max-size': v }), /invalid value for max-size/, v);
    assert.throws(() => parseLogOptions({ 'max-buffer-size': '1m' }), /unknown log opt 'max-buffer-size' for json-file log driver/);
    assert.deepEqual(parseLogOptions({ compress: 'true', labels: 'a', env: 'B', tag: '{{.Name}}' }), DEFAULT_ROTATION);
  });
});

describe('log lines', () => {
  it('splits output into lines that keep their newline, a trailing partial line too', () => {
    const parts = (s: string) => splitLines(Buffer.from(s)).map((b) => b.toString());
    assert.deepEqual(parts('a\nb\n'), ['a\n', 'b\n']);
    assert.deepEqual(parts('a\n\nb'), ['a\n', '\n', 'b']);
    assert.deepEqual(parts('no newline'), ['no newline']);
    assert.deepEqual(parts(''), []);
    assert.deepEqual(Buffer.concat(splitLines(Buffer.from([0, 10, 255, 10, 1]))), Buffer.from([0, 10, 255, 10, 1]), 'binary-safe');
  });

  it('writes records that read back, binary and streams intact, and rotates to stay bounded', async () => {
    const file = path.join(tmpDir(), 'container.log');
    const w = new LogWriter(file, { maxSize: 1000, maxFiles: 3 });
    w.write('stderr', Buffer.from([0xff, 0x00, 0x0a]));
    for (let i = 0; i < 100; i++) w.write('stdout', Buffer.from(`line ${i}\n`));
    w.close();
    const names = fs.readdirSync(path.dirname(file)).sort();
    assert.deepEqual(names, ['container.log', 'container.log.1', 'container.log.2'], 'max-file counts the current file');
    for (const n of names) assert.ok(fs.statSync(path.join(path.dirname(file), n)).size <= 1000, `${n} is within max-size`);
    const records = await readAllLines(file);
    assert.equal(records.at(-1)!.data.toString(), 'line 99\n');
    const numbers = records.map((r) => Number(/^line (\d+)/.exec(r.data.toString())?.[1]));
    assert.deepEqual(numbers, numbers.map((_, i) => numbers[0]! + i), 'oldest first, nothing out of order');
    assert.ok(numbers[0]! > 0, 'the oldest lines were dropped');
    assert.ok(records.every((r) => r.stream === 'stdout'));
  });

  it('reads back the first record of a file, and skips a torn last line', async () => {
    const file = path.join(tmpDir(), 'container.log');
    const w = new LogWriter(file);
    w.write('stderr', Buffer.from([0xff, 0x00, 0x0a]));
    w.close();
    fs.appendFileSync(file, '{"s":"stdout","t":"2024');
    const records = await readAllLines(file);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.stream, 'stderr');
    assert.deepEqual([...records[0]!.data], [0xff, 0x00, 0x0a]);
  });
});
