/**
 * Metadata durability: a daemon killed with SIGKILL in the middle of many
 * concurrent create/start/rm operations leaves no orphan VM, directory or mount,
 * and no container on disk that `ps -a` does not list. (Schema migrations:
 * test/unit/metadata.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon, waitFor } from './helpers/daemon.js';

function call(socketPath: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({ socketPath, method, path: p, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: text }));
    });
    req.on('error', () => resolve({ status: 0, body: '' })); // the daemon was killed under us
    req.end(data);
  });
}

describe('crash consistency', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => d?.stop());

  it('survives SIGKILL during 100 concurrent create/start/rm operations', async (t) => {
    const ops: Array<Promise<unknown>> = [];
    let created = 0;
    let settled = 0;
    for (let i = 0; i < 50; i++) {
      ops.push(
        call(d.socket, 'POST', `/v1.51/containers/create?name=c${i}`, { Image: 'busybox', Cmd: ['sleep', '1000'] }).then(async (r) => {
          if (r.status !== 201) return;
          created++;
          const id = (JSON.parse(r.body) as { Id: string }).Id;
          if (i % 10 === 0) await call(d.socket, 'POST', `/v1.51/containers/${id}/start`);
          else await call(d.socket, 'DELETE', `/v1.51/containers/${id}?force=1`);
          settled++;
        }),
      );
    }
    // Killed once the removals and starts are under way (a few answered, most not), not before.
    await waitFor(() => created >= 30 && settled >= 3, { what: 'removals and starts under way', timeoutMs: 60_000, intervalMs: 10 });
    await d.kill();
    await Promise.all(ops);
    await d.restart();

    const listed = new Set((await d.run(['ps', '-a', '-q', '--no-trunc'])).stdout.trim().split('\n').filter(Boolean));
    const onDisk = new Set(fs.readdirSync(path.join(d.dataRoot, 'data', 'containers')));
    assert.deepEqual([...onDisk].sort(), [...listed].sort(), 'every container directory is listed, and every listed one has its directory');
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(path.join(d.dataRoot, 'data', 'containers')));
    for (const m of mounts) assert.ok([...listed].some((id) => m.includes(id)), `no mount of a forgotten container: ${m}`);
    const running = (await d.run(['ps', '-q'])).stdout.trim().split('\n').filter(Boolean).length;
    t.diagnostic(`after the crash: ${listed.size} containers listed, ${running} running`);
    const vms = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('qemu-system') && l.includes(d.dataRoot) && !l.includes('/templates/')).length;
    assert.equal(vms, running, 'one VM per running container, no orphans');

    // Everything that survived is usable: remove it all, leaving nothing behind.
    for (const id of listed) assert.equal((await d.run(['rm', '-f', id])).code, 0);
    assert.deepEqual(fs.readdirSync(path.join(d.dataRoot, 'data', 'containers')), []);
    assert.equal(fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(path.join(d.dataRoot, 'data', 'containers'))).length, 0);
  });
});
