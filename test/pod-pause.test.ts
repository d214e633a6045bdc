/**
 * Pausing a pod member freezes the pod's one VM, so every member is paused,
 * and stopping a sibling afterwards completes (it used to hang forever: the
 * VM was frozen but only one member was marked paused, so nothing resumed it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';

describe('pausing a pod member', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemonWithBusybox();
  });
  after(async () => {
    await d?.stop();
  });

  const status = async (name: string) => {
    const r = await d.run(['inspect', name]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Array<{ State: { Status: string; Paused: boolean } }>)[0]!.State;
  };

  it('pauses every member of the pod, and a sibling still stops', async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'pp'])).code, 0);
    for (const name of ['pa', 'pb']) {
      const r = await d.run(['run', '-d', '--pod', 'pp', '--name', name, 'busybox', 'sleep', '1000']);
      assert.equal(r.code, 0, r.stderr);
    }
    const paused = await d.run(['pause', 'pa']);
    assert.equal(paused.code, 0, paused.stderr);
    assert.deepEqual(await status('pa'), { ...(await status('pa')), Status: 'paused', Paused: true });
    assert.equal((await status('pb')).Paused, true, 'the sibling shares the frozen VM: it is paused too');
    const stop = await d.run(['stop', '-t', '1', 'pb'], { timeoutMs: 30_000 });
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await status('pb')).Status, 'exited');
    // Stopping resumed the VM: the other member runs again.
    assert.deepEqual([(await status('pa')).Status, (await status('pa')).Paused], ['running', false]);
    const exec = await d.run(['exec', 'pa', 'echo', 'alive'], { timeoutMs: 30_000 });
    assert.equal(exec.stdout.trim(), 'alive', exec.stderr);
    assert.equal((await d.run(['pod', 'rm', '-f', 'pp'])).code, 0);
  });
});
