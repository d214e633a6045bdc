/**
 * The guest keeps a tickless-capable clocksource even when its template boots
 * on a loaded host (issue 13, item 7): without the TSC frequency on its command
 * line, a guest booted under load fell back to refined-jiffies, and every clone
 * of that template ticked 100 times a second while idle.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { clockArgs } from '../src/vm/qemu/args.js';
import { TestDaemon } from './helpers/daemon.js';

const known = clockArgs('tcg').length > 0;

describe('guest clock', { skip: known ? false : "this host's TSC frequency is not known (no constant_tsc/tsc_known_freq): the guest calibrates itself" }, () => {
  it('a template booted with both cores busy still gets a TSC clocksource', async () => {
    const hogs: ChildProcess[] = [0, 1].map(() => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
    const d = new TestDaemon(['--accel', 'tcg'], {}, { ownTemplates: true });
    try {
      await d.start();
      await d.importBusybox();
      const r = await d.run(['run', '--rm', 'busybox', 'sh', '-c', 'cat /sys/devices/system/clocksource/clocksource0/current_clocksource /proc/cmdline'], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      const [clocksource] = r.stdout.split('\n');
      assert.match(clocksource ?? '', /^tsc/, `guest clocksource: ${r.stdout}`);
      assert.match(r.stdout, /tsc_early_khz=\d+/);
    } finally {
      for (const h of hogs) h.kill('SIGKILL');
      await d.stop();
    }
  });
});
