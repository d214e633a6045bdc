/**
 * The shim's binary protocol without containerd or a VM (the VM boots only at
 * Create): `start` run twice at once for two containers of one pod starts one
 * serving shim and prints only its address to both; `delete` is idempotent and
 * prints a DeleteResponse; a container of another pod gets another shim.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { repoRoot } from '../../src/common/paths.js';
import { decode } from '../../src/shim/proto.js';

const run = promisify(execFile);
const shim = path.join(repoRoot, 'bin/containerd-shim-hyperbox-v2');

describe('shim binary protocol', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbshimbin-'));
  const env = { ...process.env, HYPERBOX_SHIM_STATE: path.join(dir, 'state') };
  const served = () => fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      return cmd.includes(shim) && cmd.includes(`${dir}/`) && cmd.endsWith('serve\0');
    } catch {
      return false;
    }
  }).map(Number);
  after(async () => {
    for (const pid of served()) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && served().length; i++) await new Promise((r) => setTimeout(r, 50));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const bundle = (id: string, sandbox: string) => {
    const b = path.join(dir, 'bundles', id);
    fs.mkdirSync(b, { recursive: true });
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify({ process: { args: ['true'] }, annotations: { 'io.kubernetes.cri.sandbox-id': sandbox } }));
    return b;
  };
  const shimRun = (b: string, id: string, action: string) =>
    run(shim, ['-namespace', 'ns', '-address', path.join(dir, 'no-containerd.sock'), '-publish-binary', '/bin/false', '-id', id, ...(action === 'delete' ? ['-bundle', b] : []), action], { cwd: b, env, encoding: 'buffer' });

  it('starts one shim per pod, whoever asks first, and prints only its address', async () => {
    const [a, b] = await Promise.all([shimRun(bundle('a', 'pod1'), 'a', 'start'), shimRun(bundle('b', 'pod1'), 'b', 'start')]);
    assert.match(a.stdout.toString(), /^unix:\/\/\/.*\/shim\.sock$/);
    assert.equal(b.stdout.toString(), a.stdout.toString());
    assert.equal(a.stderr.length + b.stderr.length, 0);
    assert.equal(served().length, 1);
    const other = await shimRun(bundle('c', 'pod2'), 'c', 'start');
    assert.notEqual(other.stdout.toString(), a.stdout.toString());
    assert.equal(served().length, 2);
  });

  it('delete answers a DeleteResponse, again and again, and leaves a live pod shim alone', async () => {
    for (let i = 0; i < 2; i++) {
      const { stdout } = await shimRun(path.join(dir, 'bundles', 'a'), 'a', 'delete');
      const res = decode<{ exit_status: number; exited_at: { seconds: number } }>('containerd.task.v2.DeleteResponse', stdout);
      assert.equal(res.exit_status, 137);
      assert.ok(res.exited_at.seconds > 0);
    }
    assert.equal(served().length, 2);
    await assert.rejects(shimRun(path.join(dir, 'bundles', 'a'), 'a', 'frobnicate'), /unknown action "frobnicate"/);
  });
});
