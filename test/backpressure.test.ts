/**
 * A client that stops reading a stream (logs -f here; attach and exec share
 * the writer) is cut off once it is MAX_CLIENT_BACKLOG behind, instead of
 * growing the daemon's memory, and the container runs on.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';

function rssMiB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

describe('slow stream clients', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  it('cuts off a logs -f client that does not read, and keeps the container and the daemon well', async () => {
    const r = await d.run(['run', '-d', 'busybox', 'sh', '-c', "yes $(head -c 4000 /dev/zero | tr '\\0' x)"]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    let ended = false;
    let received = 0;
    let response: http.IncomingMessage | undefined;
    const req = http.get({ socketPath: d.socket, path: `/v1.51/containers/${id}/logs?follow=1&stdout=1&tail=0` }, (res) => {
      response = res;
      res.pause(); // reads nothing for now
      res.on('data', (c: Buffer) => (received += c.length));
      res.on('close', () => (ended = true));
      res.on('error', () => (ended = true));
    });
    req.on('error', () => (ended = true));
    await until('the logs response', () => response !== undefined, 30_000);
    // Let the container print well past the cap while the client reads nothing.
    const logDir = path.join(d.dataRoot, 'data', 'containers', id);
    const logged = () => fs.readdirSync(logDir).filter((f) => f.startsWith('container.log')).reduce((n, f) => n + fs.statSync(path.join(logDir, f)).size, 0);
    await until('the container to print 60 MB of log', () => logged() > 60 * 1024 * 1024, 120_000);
    assert.ok(rssMiB(d.proc!.pid!) < 600, `daemon RSS ${rssMiB(d.proc!.pid!)} MiB`);
    // Reading now: the daemon gave up on this client, so what it gets is bounded and the stream ends.
    response!.resume();
    await until('the cut-off stream to end', () => ended, 30_000);
    assert.ok(received < 48 * 1024 * 1024, `the slow client still got ${received} bytes`);
    assert.equal((await d.run(['inspect', '-f', '{{.State.Status}}', id])).stdout.trim(), 'running');
    const exec = await d.run(['exec', id, 'echo', 'still-here']);
    assert.equal(exec.stdout.trim(), 'still-here');
    await d.run(['rm', '-f', id]);
  });
});
