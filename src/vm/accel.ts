/**
 * Chooses the accelerator. KVM is used only when a real guest has been seen to
 * boot with it: on some hosts /dev/kvm opens fine but cannot run a stock kernel
 * (e.g. a paravirtual KVM), and QEMU then hangs or dies. The probe boots our own
 * kernel and agent under KVM with a time bound; its verdict is cached per
 * kernel/initrd/QEMU and can be overridden (--accel, config file, HYPERBOX_ACCEL).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AgentConnection } from '../agent/connection.js';
import type { GuestAssets } from './assets.js';
import type { Accel } from './driver.js';
import { QemuVm } from './qemu/process.js';

export interface AccelDecision {
  accel: Accel;
  reason: string;
}

const PROBE_TIMEOUT_MS = 8000;

export function parseAccel(value: string | undefined): Accel | 'auto' {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'kvm' || value === 'tcg') return value;
  throw new Error(`invalid accelerator "${value}": expected auto, kvm or tcg`);
}

async function probeKvm(assets: GuestAssets, runDir: string): Promise<AccelDecision> {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    return { accel: 'tcg', reason: `/dev/kvm is not usable (${(err as NodeJS.ErrnoException).code}): using TCG software emulation` };
  }
  const vm = QemuVm.launch({ runDir, shape: { assets, accel: 'kvm', memoryMiB: 128, cpus: 1 }, sharePaths: [] });
  const started = Date.now();
  const died = new Promise<never>((_, reject) => vm.once('exit', () => reject(new Error('QEMU exited'))));
  try {
    const conn = await Promise.race([AgentConnection.connect(vm.controlSocket, { timeoutMs: PROBE_TIMEOUT_MS }), died]);
    conn.close();
    return { accel: 'kvm', reason: `KVM: a guest booted under KVM in ${Date.now() - started} ms` };
  } catch (err) {
    const detail = vm.diagnostics(300).split('\n').filter(Boolean).pop() ?? (err as Error).message;
    return {
      accel: 'tcg',
      reason: `/dev/kvm exists but a guest did not boot with it within ${PROBE_TIMEOUT_MS / 1000} s (${detail}): using TCG software emulation`,
    };
  } finally {
    vm.stop();
    await vm.waitExit();
    fs.rmSync(runDir, { recursive: true, force: true });
  }
}

export async function chooseAccelerator(opts: {
  requested: Accel | 'auto';
  assets: GuestAssets;
  cacheDir: string;
}): Promise<AccelDecision> {
  if (opts.requested !== 'auto') return { accel: opts.requested, reason: `${opts.requested} chosen by configuration` };
  let qemuId = '';
  try {
    const st = fs.statSync('/usr/bin/qemu-system-x86_64');
    qemuId = `${st.size}:${st.mtimeMs}`;
  } catch {
    /* QEMU elsewhere on PATH: key by assets only */
  }
  const key = `${opts.assets.fingerprint}:${qemuId}`;
  const cacheFile = path.join(opts.cacheDir, 'accel-probe.json');
  let cache: Record<string, AccelDecision> = {};
  try {
    cache = JSON.parse(fs.readFileSync(cacheFile, 'utf8')) as Record<string, AccelDecision>;
    const hit = cache[key];
    if (hit && (hit.accel === 'kvm' || hit.accel === 'tcg')) return { accel: hit.accel, reason: `${hit.reason} (cached probe)` };
  } catch {
    /* no cache yet, or an unreadable one: probe again */
  }
  const decision = await probeKvm(opts.assets, path.join(opts.cacheDir, `probe-${randomBytes(4).toString('hex')}`));
  fs.mkdirSync(opts.cacheDir, { recursive: true });
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ ...cache, [key]: decision }));
  fs.renameSync(tmp, cacheFile);
  return decision;
}
