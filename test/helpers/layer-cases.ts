/**
 * `diff` and `commit` of a container's writable layer (added files, a
 * whiteout, a directory replaced by an opaque one), as cases that run against
 * a daemon of either storage driver: files.test.ts (roots on the host) and
 * block-root.test.ts (roots on block devices, read through the guest).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { TestDaemon } from './daemon.js';
import { docker } from './docker.js';

/** What BOX runs in the busybox image before the cases look at it (it ends asleep). */
export const LAYER_SCRIPT =
  'echo inside > /tmp/made; ln -s /etc/passwd /tmp/pw; mkdir -p /tmp/d/e; echo deep > /tmp/d/e/f; rm /bin/vi; rm -rf /home; mkdir /home; echo fresh > /home/new; sleep 1000';

export function layerCases(daemon: () => TestDaemon, box: string): void {
  it('diff lists changes', async () => {
    const diff = (await daemon().run(['diff', box])).stdout;
    for (const line of ['A /tmp/made', 'D /bin/vi', 'C /home', 'A /home/new']) assert.match(diff, new RegExp(`^${line}$`, 'm'));
  });

  it('commit makes an image with the changes (whiteouts and opaque dirs included) that runs', async () => {
    const d = daemon();
    const c = await docker(d, ['commit', '-c', 'CMD ["cat", "/tmp/made"]', '-m', 'snapshot', box, 'snap:1']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
    assert.equal((await d.run(['run', '--rm', 'snap:1'])).stdout, 'inside\n');
    const r = await d.run(['run', '--rm', 'snap:1', 'sh', '-c', 'ls /bin/vi 2>&1; ls /home; cat /tmp/d/e/f']);
    assert.match(r.stdout, /No such file or directory\nnew\ndeep\n/);
    const h = await d.run(['history', 'snap:1']);
    assert.match(h.stdout, /snapshot/);
    assert.equal((await d.run(['inspect', '-f', '{{.State.Running}}', box])).stdout.trim(), 'true', 'the container runs on after a paused commit');
  });
}
