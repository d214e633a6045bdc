/**
 * Container logs at volume: a guest printing as fast as it can is logged in
 * batches; `logs` streams the file and `--tail` reads it from the end, so the
 * daemon's memory does not grow with the log; a bounded producer's lines come
 * back complete and in order; a torn last line (a daemon killed mid-write) is
 * skipped.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';
import { docker, dockerEnv } from './helpers/docker.js';

/** Resident and peak resident memory of PID, MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) / 1024;
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** Resets PID's peak RSS (VmHWM) to its current RSS. */
function resetPeak(pid: number): void {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** `docker logs ARGS` with its output counted, not kept: bytes, lines, and the last line (ONLINES: the count so far). */
function countLogs(d: TestDaemon, args: string[], onLines?: (lines: number) => void): Promise<{ code: number; bytes: number; lines: number; last: string }> {
  return new Promise((resolve) => {
    const child = spawn('docker', ['logs', ...args], { env: dockerEnv(d), stdio: ['ignore', 'pipe', 'ignore'] });
    let bytes = 0;
    let lines = 0;
    let tail = Buffer.alloc(0);
    child.stdout.on('data', (c: Buffer) => {
      bytes += c.length;
      for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) lines++;
      tail = Buffer.concat([tail, c]).subarray(-256);
      onLines?.(lines);
    });
    child.on('close', (code) => resolve({ code: code ?? -1, bytes, lines, last: tail.toString().trimEnd().split('\n').at(-1) ?? '' }));
  });
}

const LINE = 'hyperbox-log-flood-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789';

describe('container logs at volume', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  const logDir = (id: string) => path.join(d.dataRoot, 'data', 'containers', id);
  const logged = (id: string) =>
    fs
      .readdirSync(logDir(id))
      .filter((f) => f.startsWith('container.log'))
      .reduce((n, f) => n + fs.statSync(path.join(logDir(id), f)).size, 0);

  it('tails and streams a large log without the daemon holding it in memory', async () => {
    const r = await docker(d, ['run', '-d', 'busybox', 'yes', LINE]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const MiB = 1024 * 1024;
    await until('the container to print 60 MiB of log', () => logged(id) > 60 * MiB, 240_000);
    const pid = d.proc!.pid!;

    // While it floods: the last 5 lines, read from the end.
    const tail = await docker(d, ['logs', '--tail', '5', id]);
    assert.equal(tail.code, 0, tail.stderr);
    // It is still printing: the last line may be cut where the guest's output was.
    const lines = tail.stdout.split('\n');
    if (lines.at(-1) === '') lines.pop();
    assert.equal(lines.length, 5, tail.stdout);
    assert.ok(lines.slice(0, 4).every((l) => l === LINE) && lines[4]!.length > 0 && LINE.startsWith(lines[4]!), tail.stdout);

    // Stopped: the whole log, streamed.
    assert.equal((await docker(d, ['kill', id])).code, 0);
    assert.equal((await docker(d, ['wait', id])).code, 0);
    let size = -1;
    await until('the log to stop growing', () => size === (size = logged(id)), 10_000);
    resetPeak(pid);
    const first = memory(pid);
    const all = await countLogs(d, [id]);
    const firstPeak = memory(pid).hwm - first.rss;
    assert.equal(all.code, 0);
    assert.ok(all.last.length > 0 && LINE.startsWith(all.last), 'the last line, maybe cut short by the kill');
    assert.ok(all.bytes > 40 * MiB, `docker logs gave ${all.bytes} bytes`);
    assert.ok(all.lines > all.bytes / (LINE.length + 1) - 2, `${all.lines} lines in ${all.bytes} bytes`);
    // Memory: three more full reads, measured. The first one grew V8's young generation
    // to its steady size (up to ~3 x 16 MiB of garbage space, whatever the log's size);
    // what a read adds beyond that is garbage not yet collected (it varies with when the
    // GC runs) plus what reading holds on to, which every read would show: the least of
    // three is the measure.
    const margin = 12;
    const grew: Array<{ before: number; peak: number }> = [];
    for (let i = 0; i < 3; i++) {
      resetPeak(pid);
      const before = memory(pid);
      const again = await countLogs(d, [id]);
      assert.equal(again.bytes, all.bytes);
      grew.push({ before: before.rss, peak: memory(pid).hwm });
    }
    assert.ok(size / MiB > 4 * margin, `the log (${Math.round(size / MiB)} MiB) is several times the margin`);
    assert.ok(firstPeak < size / MiB - margin, `the first read grew the daemon by ${firstPeak.toFixed(1)} MiB, about the log's size`);
    const reads = grew.map((g) => `+${(g.peak - g.before).toFixed(1)} (from ${g.before.toFixed(1)})`).join(', ');
    console.log(`reading a ${Math.round(size / MiB)} MiB log: daemon peak RSS first +${firstPeak.toFixed(1)} MiB, then ${reads}`);
    const least = Math.min(...grew.map((g) => g.peak - g.before));
    assert.ok(least < margin, `daemon peak RSS grew at least ${least.toFixed(1)} MiB on every read of a ${Math.round(size / MiB)} MiB log: ${reads}`);

    // The daemon stays responsive to others meanwhile.
    const echo = await docker(d, ['run', '--rm', 'busybox', 'echo', 'ok']);
    assert.equal(echo.stdout, 'ok\n');
    await docker(d, ['rm', '-f', id]);
  });

  it('gives a bounded producer\'s lines back complete and in order, and skips a torn last line', async () => {
    const r = await docker(d, ['run', '--name', 'counter', 'busybox', 'seq', '1', '200000'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const expected = Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join('');
    assert.equal(r.stdout.length, expected.length, 'the attached client got everything');
    const logs = await docker(d, ['logs', 'counter']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.ok(logs.stdout === expected, `docker logs: ${logs.stdout.length} bytes, expected ${expected.length}`);
    const tail = await docker(d, ['logs', '--tail', '3', 'counter']);
    assert.equal(tail.stdout, '199998\n199999\n200000\n');

    // A daemon killed mid-write leaves a torn last line: it is skipped.
    const id = (await docker(d, ['inspect', '-f', '{{.Id}}', 'counter'])).stdout.trim();
    fs.appendFileSync(path.join(logDir(id), 'container.log'), '{"s":"stdout","t":"2025-01-01T00:00:00.0');
    assert.equal((await docker(d, ['logs', '--tail', '2', 'counter'])).stdout, '199999\n200000\n');
    const again = await docker(d, ['logs', 'counter']);
    assert.ok(again.stdout === expected, 'the torn line is not shown');
    // The container runs again: its new output starts on a line of its own.
    assert.equal((await docker(d, ['start', '-a', 'counter'], { timeoutMs: 180_000 })).code, 0);
    await until('the second run logged', async () => (await docker(d, ['logs', '--tail', '1', 'counter'])).stdout === '200000\n', 30_000);
    const twice = await countLogs(d, ['counter']);
    assert.equal(twice.lines, 400000);
    await docker(d, ['rm', '-f', 'counter']);
  });

  it('follows a flooding container from its tail and stops with it', async () => {
    // The last line waits for the host's word (through a bind), given once the follower has the
    // tail: a follower that started late (a busy machine) would find the container gone already.
    const sig = fs.mkdtempSync(path.join(d.dataRoot, 'sig-'));
    const r = await docker(d, ['run', '-d', '-v', `${sig}:/sig`, 'busybox', 'sh', '-c', 'seq 1 300000; until [ -e /sig/go ]; do sleep 0.1; done; echo done']);
    const id = r.stdout.trim();
    const go = path.join(sig, 'go');
    const f = await countLogs(d, ['-f', '--tail', '10', id], (lines) => lines >= 10 && !fs.existsSync(go) && fs.writeFileSync(go, ''));
    assert.equal(f.code, 0);
    assert.equal(f.last, 'done');
    assert.ok(f.lines >= 11, `followed ${f.lines} lines`);
    await docker(d, ['rm', '-f', id]);
  });
});
