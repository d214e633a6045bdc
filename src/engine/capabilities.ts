/**
 * Linux capabilities as Docker spells them (`--cap-add`, `--cap-drop`,
 * `--privileged`): the names, Docker's default set, and the set a container's
 * processes get. The guest agent computes the same set itself from the names
 * (guest/agent/request.c); this module validates them at create, as dockerd
 * does, and states the expected masks for tests and inspect.
 */
import { invalid } from '../common/errors.js';

/** Capability N is CAPABILITIES[N] (Linux 6.1, the guest's kernel). */
export const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID',
  'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW',
  'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT',
  'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD',
  'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG',
  'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
] as const;

/** Docker's default set (moby oci/caps/defaults.go). */
export const DOCKER_DEFAULT_CAPS = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP',
  'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
] as const;

/**
 * A name as Docker accepts it, normalized: "ALL", or "CAP_" and an upper-case
 * known capability. Case-insensitive, with or without the prefix ("CAP_ALL" is
 * not "ALL", as in Docker). Throws Docker's "unknown capability" otherwise.
 */
export function normalizeCapability(name: string): string {
  const upper = name.toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!(CAPABILITIES as readonly string[]).includes(full.slice(4))) throw invalid(`unknown capability: ${JSON.stringify(full)}`);
  return full;
}

/** Validates `CapAdd`/`CapDrop` as dockerd does at create ("invalid CapAdd: unknown capability: ..."). */
export function checkCapabilities(field: 'CapAdd' | 'CapDrop', names: string[] | undefined): void {
  for (const n of names ?? []) {
    try {
      normalizeCapability(n);
    } catch (err) {
      throw invalid(`invalid ${field}: ${(err as Error).message}`);
    }
  }
}

const bit = (name: string) => 1n << BigInt(CAPABILITIES.indexOf(name.slice(4) as (typeof CAPABILITIES)[number]));

/**
 * The capability mask of a container's processes (as /proc/PID/status shows
 * CapEff for root): Docker's TweakCapabilities. Privileged: every one; ALL
 * added: every one but those dropped; ALL dropped: only those added; else the
 * default set less the dropped plus the added.
 */
export function capabilityMask(opts: { CapAdd?: string[]; CapDrop?: string[]; Privileged?: boolean }): bigint {
  const every = (1n << BigInt(CAPABILITIES.length)) - 1n;
  const add = (opts.CapAdd ?? []).map(normalizeCapability);
  const drop = (opts.CapDrop ?? []).map(normalizeCapability);
  const mask = (names: string[]) => names.filter((n) => n !== 'ALL').reduce((m, n) => m | bit(n), 0n);
  if (opts.Privileged) return every;
  if (add.includes('ALL')) return every & ~mask(drop);
  if (drop.includes('ALL')) return mask(add);
  return (mask(DOCKER_DEFAULT_CAPS.map((c) => `CAP_${c}`)) & ~mask(drop)) | mask(add);
}
