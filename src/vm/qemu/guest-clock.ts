/**
 * Whether a template guest can idle tickless (issue 13, item 7). Every clone
 * inherits its template's clocksource: a template that booted onto
 * `refined-jiffies` (under TCG on a busy host the guest cannot calibrate its
 * TSC) makes every container of its shape take ~100 timer interrupts a second
 * forever. The template store checks each new template and rebuilds one that
 * ticks.
 *
 * The check is read from the host, with no guest change and no extra boot
 * time: the guest's local APIC timer mode (`info lapic` over QMP, per vCPU). A
 * kernel without a high-resolution clocksource (jiffies, refined-jiffies) cannot
 * switch its tick device to one-shot mode, so its LAPIC timer stays `periodic`;
 * with tsc, tsc-early or kvm-clock it runs `one-shot` (or `tsc-deadline`). The
 * kernel's "Switched to clocksource X" console line, when the console has it
 * (the guest boots `quiet`, so normally not), names the clocksource itself and
 * takes precedence.
 */
import fs from 'node:fs';
import type { QmpClient } from './qmp.js';

/** Clocksources a guest idles tickless on (and that survive a clone's restore). */
export const TICKLESS_CLOCKSOURCES = ['tsc', 'tsc-early', 'kvm-clock'];

export type LapicTimerMode = 'periodic' | 'one-shot' | 'tsc-deadline';

export interface GuestClock {
  /** Unknown (no verdict could be read) counts as tickless: nothing to rebuild for. */
  tickless: boolean;
  /** The last clocksource the console log names, if it names one. */
  clocksource?: string;
  /** The LAPIC timer mode of each vCPU that answered. */
  timers: LapicTimerMode[];
  /** For logs: "clocksource tsc-early", "LAPIC timer one-shot", "unknown". */
  summary: string;
}

/** The clocksource the kernel last switched to, from its console log ("clocksource: Switched to clocksource X"). */
export function parseClocksource(consoleLog: string): string | undefined {
  const all = [...consoleLog.matchAll(/Switched to clocksource ([\w.-]+)/g)];
  return all.at(-1)?.[1];
}

/** The LVT timer mode in QEMU's `info lapic` dump (the `LVTT` line). */
export function parseLapicTimerMode(dump: string): LapicTimerMode | undefined {
  const line = /^LVTT\b.*$/m.exec(dump)?.[0];
  if (!line) return undefined;
  // QEMU prints the mode as a word; the LVT value (bits 17-18) is the fallback.
  const word = /\b(periodic|one-shot|tsc-deadline)\b/.exec(line)?.[1] as LapicTimerMode | undefined;
  if (word) return word;
  const value = /^LVTT\s+0x([0-9a-f]+)/i.exec(line)?.[1];
  if (!value) return undefined;
  return (['one-shot', 'periodic', 'tsc-deadline'] as const)[(parseInt(value, 16) >> 17) & 3];
}

/** The verdict from what could be read: the console's clocksource if named, else the vCPUs' timer modes. */
export function judgeGuestClock(consoleLog: string, lapicDumps: string[]): GuestClock {
  const clocksource = parseClocksource(consoleLog);
  const timers = lapicDumps.map(parseLapicTimerMode).filter((m): m is LapicTimerMode => !!m);
  const modes = [...new Set(timers)].join('/');
  if (clocksource) {
    return { tickless: TICKLESS_CLOCKSOURCES.includes(clocksource), clocksource, timers, summary: `clocksource ${clocksource}${modes ? `, LAPIC timer ${modes}` : ''}` };
  }
  if (timers.length === 0) return { tickless: true, timers, summary: 'unknown (no LAPIC state)' };
  return { tickless: !timers.includes('periodic'), timers, summary: `LAPIC timer ${modes}` };
}

/**
 * Reads the clock verdict of a running guest (before its template is saved).
 * A periodic timer is read again after `settleMs`: a guest that has just
 * switched clocksource turns its tick to one-shot on its next tick.
 */
export async function probeGuestClock(qmp: QmpClient, cpus: number, consolePath: string, settleMs = 300): Promise<GuestClock> {
  const read = async (): Promise<GuestClock> => {
    const dumps: string[] = [];
    for (let cpu = 0; cpu < cpus; cpu++) {
      try {
        dumps.push(String(await qmp.execute('human-monitor-command', { 'command-line': 'info lapic', 'cpu-index': cpu }, 5000)));
      } catch {
        // An accelerator or QEMU without the dump: that vCPU gives no verdict.
      }
    }
    let log = '';
    try {
      log = fs.readFileSync(consolePath, 'utf8');
    } catch {
      /* no console log */
    }
    return judgeGuestClock(log, dumps);
  };
  const first = await read();
  if (first.tickless || first.clocksource) return first;
  await new Promise((r) => setTimeout(r, settleMs));
  return read();
}
