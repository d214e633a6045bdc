/**
 * The sandbox library on its own: a program that is not hyperboxd boots a VM
 * (an instant clone of a template it makes itself), mounts a root, runs a
 * process and gets its output and exit code, in this test's own process: no
 * daemon is started or asked (a hyperboxd elsewhere on the machine is irrelevant).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { openRuntime, ROOT_NAME } from '../src/sandbox/index.js';
import { busyboxTar } from './helpers/daemon.js';

describe('sandbox library (no daemon)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbsb-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('boots a sandbox, runs a process in its root, and cleans up', async () => {
    const rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(rootfs);
    execFileSync('tar', ['-xf', busyboxTar, '-C', rootfs]);
    fs.writeFileSync(path.join(rootfs, 'marker'), 'the host wrote this\n');
    const rt = await openRuntime({ stateDir: path.join(dir, 'state'), accel: process.env.HYPERBOX_ACCEL });
    const sandbox = await rt.start({ rootfs, hostname: 'libbox', runDir: path.join(dir, 'state/run/one') });
    try {
      assert.ok(['clone', 'cold'].includes(sandbox.info.mode));
      const proc = await sandbox.exec({ root: ROOT_NAME, args: ['sh', '-c', 'echo hello from $(hostname); cat /marker; exit 3'], env: ['PATH=/bin'], cwd: '/', user: '', tty: false, stdin: false });
      let out = '';
      proc.on('stdout', (b) => (out += b.toString()));
      const exited = new Promise<number>((r) => proc.on('exit', (st) => r(st.code)));
      proc.release();
      assert.equal(await exited, 3);
      assert.equal(out, 'hello from libbox\nthe host wrote this\n');
    } finally {
      sandbox.release();
      await sandbox.waitExit();
    }
    assert.equal(sandbox.exited, true);
  });
});
