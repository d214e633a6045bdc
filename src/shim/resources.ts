/**
 * The OCI spec's linux section as the guest applies it to a container:
 * resources (linux.resources, also Update's) as the limits of the root's own
 * cgroup, and what its main process gets (sysctls, masked and read-only
 * paths, the seccomp program). Conversions are runc's for cgroup v2.
 */
import type { RootLimits } from '../sandbox/index.js';
import { compileSeccomp, SeccompError, type SeccompProfile } from './seccomp.js';
import { Code, RpcError } from './ttrpc.js';

export interface OciResources {
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number };
  pids?: { limit?: number };
}

export interface OciLinux {
  namespaces?: Array<{ type?: string; path?: string }>;
  resources?: OciResources;
  sysctl?: Record<string, string>;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: SeccompProfile;
}

const num = (v: unknown, what: string): number | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RpcError(Code.InvalidArgument, `OCI ${what} must be a number`);
  return v;
};

/** cpu.shares (2..262144) -> cpu.weight (1..10000), as runc converts it. */
export const sharesToWeight = (shares: number): number => Math.min(10000, Math.max(1, 1 + Math.floor(((shares - 2) * 9999) / 262142)));

/** The cgroup limits of linux.resources (only those it sets: an Update leaves the others). */
export function limitsOf(r: OciResources | undefined): RootLimits {
  const out: RootLimits = {};
  const mem = num(r?.memory?.limit, 'memory.limit');
  if (mem !== undefined) out.memoryBytes = mem > 0 ? mem : 0;
  const quota = num(r?.cpu?.quota, 'cpu.quota');
  const period = num(r?.cpu?.period, 'cpu.period');
  if (quota !== undefined || period !== undefined) out.cpu = { quotaUs: quota && quota > 0 ? quota : undefined, periodUs: period && period > 0 ? period : 100_000 };
  const shares = num(r?.cpu?.shares, 'cpu.shares');
  if (shares) out.cpuWeight = sharesToWeight(shares);
  const pids = num(r?.pids?.limit, 'pids.limit');
  if (pids !== undefined) out.pids = pids > 0 ? pids : 0;
  return out;
}

const paths = (v: unknown, what: string): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((p) => typeof p !== 'string' || !p.startsWith('/'))) throw new RpcError(Code.InvalidArgument, `OCI ${what} must be absolute paths`);
  return v as string[];
};

/** What a container's main process gets of the linux section (execs get the seccomp program only). */
export function linuxProcessSpec(linux: OciLinux | undefined): { sysctls: string[]; maskedPaths: string[]; readonlyPaths: string[]; seccomp?: Buffer } {
  const sysctl = linux?.sysctl ?? {};
  if (typeof sysctl !== 'object' || Object.values(sysctl).some((v) => typeof v !== 'string')) throw new RpcError(Code.InvalidArgument, 'OCI linux.sysctl must map names to strings');
  let seccomp: Buffer | undefined;
  try {
    seccomp = linux?.seccomp ? compileSeccomp(linux.seccomp) : undefined;
  } catch (err) {
    throw new RpcError(err instanceof SeccompError ? Code.InvalidArgument : Code.Internal, (err as Error).message);
  }
  return {
    sysctls: Object.entries(sysctl).map(([k, v]) => `${k}=${v}`),
    maskedPaths: paths(linux?.maskedPaths, 'linux.maskedPaths'),
    readonlyPaths: paths(linux?.readonlyPaths, 'linux.readonlyPaths'),
    seccomp,
  };
}
