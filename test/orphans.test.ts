/**
 * No orphans (issue 13): a daemon stopped while it builds a template stops that
 * template's QEMU; a daemon stopped during start-up still stops cleanly; the
 * /dev/shm RAM directory of a data root that was deleted is removed by the
 * next daemon that starts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { qemuProcesses, removeDefaultBridge, repo, TestDaemon, until } from './helpers/daemon.js';

/** QEMU processes whose command line names DIR. */
function qemusOf(dir: string): string[] {
  return qemuProcesses(`${dir}/`).map((pid) => `${pid} ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
}

function memDirOf(dataRoot: string): string {
  return `/dev/shm/hyperbox-${createHash('sha256').update(path.join(dataRoot, 'data', 'templates')).digest('hex').slice(0, 12)}`;
}

async function sigterm(d: TestDaemon): Promise<number | null> {
  const p = d.proc!;
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  p.kill('SIGTERM');
  // Repeated as an init system would: a signal landing during a synchronous child can be lost (libuv).
  const repeat = setInterval(() => p.exitCode === null && p.kill('SIGTERM'), 3000);
  return exited.finally(() => clearInterval(repeat));
}

describe('no orphans', () => {
  it('stops a template guest that is still booting when the daemon stops', async () => {
    const d = new TestDaemon([], {}, { ownTemplates: true });
    try {
      await d.start();
      // At start the daemon builds the default shape's template in the background.
      await until('a template guest booting', () => qemusOf(d.dataRoot).length > 0, 20_000);
      assert.equal(await sigterm(d), 0);
      await until('no QEMU of this daemon left', () => qemusOf(d.dataRoot).length === 0, 10_000);
    } finally {
      await d.stop();
    }
  });

  it('a daemon stopped during start-up exits and leaves no VM behind', async () => {
    const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-'));
    try {
      const p = spawn(path.join(repo, 'bin/hyperboxd'), ['-H', `unix://${dataRoot}/d.sock`, '--data-root', path.join(dataRoot, 'data')], { stdio: 'ignore' });
      let done = false;
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => ((done = true), r(code))));
      // A signal that lands while Node runs a synchronous child (ip, iptables during
      // recovery) can be lost (libuv); an init system repeats it, so does this test.
      const stopper = setInterval(() => void (done || p.kill('SIGTERM')), 300);
      try {
        assert.equal(await exited, 0);
      } finally {
        clearInterval(stopper);
      }
      await until('no QEMU of this daemon left', () => qemusOf(dataRoot).length === 0, 10_000);
    } finally {
      for (const pid of qemuProcesses(`${dataRoot}/`)) process.kill(pid, 'SIGKILL');
      fs.rmSync(memDirOf(dataRoot), { recursive: true, force: true });
      removeDefaultBridge(path.join(dataRoot, 'data'));
      fs.rmSync(dataRoot, { recursive: true, force: true });
    }
  });

  it("removes a deleted data root's template memory at the next daemon start", async () => {
    const a = new TestDaemon([], {}, { ownTemplates: true });
    await a.start();
    const memDir = memDirOf(a.dataRoot);
    await until('its template', () => fs.existsSync(memDir) && fs.readdirSync(memDir).some((n) => n.endsWith('.mem')), 60_000);
    assert.equal(await sigterm(a), 0);
    // The data root goes; its RAM directory in /dev/shm stays behind...
    fs.rmSync(a.dataRoot, { recursive: true, force: true });
    assert.ok(fs.existsSync(memDir));
    // ...until the next daemon starts.
    const b = new TestDaemon([], {}, { ownTemplates: true });
    try {
      await b.start();
      assert.equal(fs.existsSync(memDir), false, `${memDir} was left behind`);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});
