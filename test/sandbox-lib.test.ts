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
import { openRuntime, ROOT_NAME, type Sandbox } from '../src/sandbox/index.js';
import { busyboxTar } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

/**
 * Output kept by the agent until acknowledged (guest/PROTOCOL.md): a process
 * printing 2 MB while the host acknowledges nothing gets as far as the agent's
 * bound (512 KiB kept) and waits there; acknowledged, it runs to its end, with
 * every byte delivered once, in order.
 */
async function keptUntilAcknowledged(sandbox: Sandbox): Promise<void> {
  const total = 2_000_000;
  const proc = await sandbox.exec({ root: ROOT_NAME, args: ['sh', '-c', `head -c ${total} /dev/zero | tr '\\0' x; echo done`], env: ['PATH=/bin'], cwd: '/', user: '', tty: false, stdin: false, keepOutput: true });
  assert.equal(proc.keeps, true, 'the agent keeps its output');
  proc.ackByOwner();
  const chunks: Buffer[] = [];
  let got = 0;
  let acking = false;
  proc.on('stdout', (b, position) => {
    chunks.push(b);
    got += b.length;
    assert.equal(position, got, 'positions count the bytes delivered');
    if (acking) proc.ack(position);
  });
  const exited = new Promise<number>((r) => proc.on('exit', (st) => r(st.code)));
  proc.release();
  // Unacknowledged: the output stops short of the bound and stays there. First most of the
  // bound, by condition (a busy machine may stall the guest for more than the window below,
  // which must not pass for "stopped"), then no more for a window.
  await waitFor(() => got > 400 * 1024, { what: '400 KiB of unacknowledged output', timeoutMs: 120_000 });
  for (let seen = -1; seen !== got; ) {
    seen = got;
    await new Promise((r) => setTimeout(r, 1500));
  }
  assert.ok(got > 400 * 1024 && got <= 512 * 1024, `the agent sent ${got} bytes unacknowledged (bound 512 KiB)`);
  assert.equal(proc.exited, undefined, 'the process waits on its pipe');
  acking = true;
  proc.ack(got);
  assert.equal(await exited, 0);
  const out = Buffer.concat(chunks).toString();
  assert.equal(out.length, total + 'done\n'.length);
  assert.ok(out.endsWith('xdone\n') && /^x+done\n$/.test(out), 'every byte once, in order');
}

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
      await keptUntilAcknowledged(sandbox);
    } finally {
      sandbox.release();
      await sandbox.waitExit();
    }
    assert.equal(sandbox.exited, true);
  });
});
