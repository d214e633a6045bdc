/** How a template guest's clock is judged (src/vm/qemu/guest-clock.ts): dumps as QEMU 7.2 prints them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeGuestClock, parseClocksource, parseLapicTimerMode } from '../../src/vm/qemu/guest-clock.js';

const lapic = (lvtt: string) => `dumping local APIC state for CPU 0 \r
\r
LVT0\t 0x00010700 active-hi edge  masked                      ExtINT (vec 0)\r
LVTPC\t 0x00010000 active-hi edge  masked                      Fixed  (vec 0)\r
LVTTHMR\t 0x00010000 active-hi edge  masked                      Fixed  (vec 0)\r
${lvtt}\r
Timer\t DCR=0x3 (divide by 16) initial_count = 624998 current_count = 433518\r
SPIV\t 0x000001ff APIC enabled, focus=off, spurious vec 255\r
`;
// A guest on tsc-early (told its TSC frequency) and one forced onto refined-jiffies, as read from real guests.
const oneShot = lapic('LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)');
const periodic = lapic('LVTT\t 0x000200ec active-hi edge                 periodic     Fixed  (vec 236)');

describe('guest clock verdict', () => {
  it('reads the LAPIC timer mode from the LVTT line (not LVTTHMR), by word or by its bits', () => {
    assert.equal(parseLapicTimerMode(oneShot), 'one-shot');
    assert.equal(parseLapicTimerMode(periodic), 'periodic');
    assert.equal(parseLapicTimerMode('LVTT\t 0x000200ec'), 'periodic');
    assert.equal(parseLapicTimerMode('LVTT\t 0x000400ec'), 'tsc-deadline');
    assert.equal(parseLapicTimerMode('LVTT\t 0x000000ec'), 'one-shot');
    assert.equal(parseLapicTimerMode('QMP: command not found'), undefined);
    assert.equal(parseLapicTimerMode(''), undefined);
  });

  it('takes the last clocksource the kernel switched to', () => {
    const log = `[    1.469130] clocksource: jiffies: mask: 0xffffffff max_cycles: 0xffffffff
[    1.495266] clocksource: Switched to clocksource tsc-early
[    2.581413] clocksource: Switched to clocksource tsc
`;
    assert.equal(parseClocksource(log), 'tsc');
    assert.equal(parseClocksource('[    0.9] clocksource: Switched to clocksource refined-jiffies\n'), 'refined-jiffies');
    assert.equal(parseClocksource(''), undefined);
  });

  it('a periodic LAPIC timer on any vCPU is a ticking guest; one-shot and tsc-deadline are tickless', () => {
    assert.equal(judgeGuestClock('', [oneShot]).tickless, true);
    assert.equal(judgeGuestClock('', [periodic]).tickless, false);
    assert.equal(judgeGuestClock('', [oneShot, periodic]).tickless, false);
    assert.equal(judgeGuestClock('', [lapic('LVTT\t 0x000400ec active-hi edge                 tsc-deadline Fixed  (vec 236)')]).tickless, true);
    assert.match(judgeGuestClock('', [periodic]).summary, /LAPIC timer periodic/);
  });

  it('a clocksource named on the console decides: tsc, tsc-early and kvm-clock are tickless, jiffies and acpi_pm are not', () => {
    for (const cs of ['tsc', 'tsc-early', 'kvm-clock']) assert.equal(judgeGuestClock(`clocksource: Switched to clocksource ${cs}\n`, [periodic]).tickless, true, cs);
    for (const cs of ['refined-jiffies', 'jiffies', 'acpi_pm']) {
      const v = judgeGuestClock(`clocksource: Switched to clocksource ${cs}\n`, [oneShot]);
      assert.equal(v.tickless, false, cs);
      assert.equal(v.clocksource, cs);
    }
  });

  it('no verdict (no dump could be read) is not a reason to rebuild', () => {
    const v = judgeGuestClock('', ['', 'Error: not supported']);
    assert.equal(v.tickless, true);
    assert.match(v.summary, /unknown/);
  });
});
