/**
 * The guest keeps a tickless-capable clocksource even when its template boots
 * on a loaded host (issue 13, item 7): without the TSC frequency on its command
 * line, a guest booted under load fell back to refined-jiffies, and every clone
 * of that template ticked 100 times a second while idle.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

/**
 * A QEMU wrapper that boots the first HB_TICK_BOOTS template guests (QEMUs not
 * started for an incoming migration) with `clocksource=refined-jiffies`: guests
 * that tick forever, as a template booted on a busy host used to.
 */
function tickingQemu(dir: string, boots: number): NodeJS.ProcessEnv {
  const wrapper = path.join(dir, 'qemu-ticking');
  fs.writeFileSync(
    wrapper,
    `#!/bin/bash
args=("$@")
if [[ " $* " == *" -append "* && " $* " != *" -incoming "* ]]; then
  n=$(cat "${dir}/boots" 2>/dev/null || echo 0)
  echo $((n + 1)) > "${dir}/boots"
  if (( n < ${boots} )); then
    for i in "\${!args[@]}"; do
      [[ \${args[$i]} == -append ]] && args[$((i + 1))]+=" clocksource=refined-jiffies"
    done
  fi
fi
exec qemu-system-x86_64 "\${args[@]}"
`,
    { mode: 0o755 },
  );
  // The wrapper runs inside each QEMU's jail: its counter's directory is bound in.
  return { HYPERBOX_QEMU: wrapper, HYPERBOX_JAIL_BIND: dir };
}

describe('template clock check', () => {
  it('rebuilds a template whose guest would tick, and keeps one after bounded attempts with a warning', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-tick-'));
    // Boots 1-3 (default shape) tick: kept anyway after 3. Boot 4 (a second shape) ticks, boot 5 does not.
    // 9p roots: one template at start (under the block driver the daemon makes two, and
    // which one boots first would decide the counts below).
    const d = new TestDaemon(['--accel', 'tcg', '--storage-driver', 'overlay'], tickingQemu(dir, 4), { ownTemplates: true });
    const clocksource = async (extra: string[]) => {
      const r = await d.run(['run', '--rm', ...extra, 'busybox', 'cat', '/sys/devices/system/clocksource/clocksource0/current_clocksource'], { timeoutMs: 180_000 });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    try {
      await d.start();
      await d.importBusybox();
      assert.equal(await clocksource([]), 'refined-jiffies');
      assert.equal(d.log.match(/no tickless clock \(LAPIC timer periodic\)/g)?.length, 3, d.log);
      assert.match(d.log, /booting it again \(attempt 3 of 3\)/);
      assert.match(d.log, /kept after 3 boots/);

      assert.match(await clocksource(['--memory', '200m']), /^tsc/);
      assert.equal(fs.readFileSync(path.join(dir, 'boots'), 'utf8').trim(), '5');
      assert.equal(d.log.match(/no tickless clock/g)?.length, 4);
      assert.match(d.log, /template \w+ ready \(264 MiB.*LAPIC timer one-shot\)/);
      const templates = await d.run(['template', 'ls']);
      assert.equal(templates.stdout.trim().split('\n').length, 3, templates.stdout); // a header and two templates
    } finally {
      await d.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
