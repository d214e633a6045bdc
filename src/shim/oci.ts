/**
 * The OCI runtime spec of a bundle (config.json), turned into what the guest
 * agent is asked for: the process (args, env, cwd, user, terminal,
 * capabilities) and the root's mounts (tmpfs, binds, read-only root).
 * The bundle is written by containerd, which the shim trusts; still, only the
 * fields used here are read and each is checked for its type.
 */
import fs from 'node:fs';
import path from 'node:path';
import { mountsUnder } from '../common/mounts.js';
import type { ProcessSpec } from '../sandbox/index.js';
import type { OciLinux } from './resources.js';
import { Code, RpcError } from './ttrpc.js';

export interface OciProcess {
  terminal?: boolean;
  user?: { uid?: number; gid?: number; additionalGids?: number[]; username?: string };
  args?: string[];
  env?: string[];
  cwd?: string;
  capabilities?: { bounding?: string[]; effective?: string[] };
  consoleSize?: { height?: number; width?: number };
  noNewPrivileges?: boolean;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciSpec {
  process?: OciProcess;
  root?: { path?: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: OciLinux;
}

/** The annotation with which the CRI plugin names a container's pod sandbox. */
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

export function readSpec(bundle: string): OciSpec {
  const file = path.join(bundle, 'config.json');
  let spec: unknown;
  try {
    spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new RpcError(Code.InvalidArgument, `reading ${file}: ${(err as Error).message}`);
  }
  if (!spec || typeof spec !== 'object') throw new RpcError(Code.InvalidArgument, `${file} is not an OCI spec`);
  return spec as OciSpec;
}

/** The key grouping containers into one shim and VM: the pod sandbox's id, or the container's own. */
export function groupOf(spec: OciSpec, id: string): string {
  const sandbox = spec.annotations?.[SANDBOX_ID_ANNOTATION];
  return typeof sandbox === 'string' && sandbox ? sandbox : id;
}

/** The path of the network namespace SPEC joins, if it names one (CRI: the pod's CNI namespace). */
export function netnsPathOf(spec: OciSpec): string | undefined {
  const ns = spec.linux?.namespaces?.find((n) => n.type === 'network');
  return typeof ns?.path === 'string' && ns.path ? ns.path : undefined;
}

const strings = (v: unknown, what: string): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new RpcError(Code.InvalidArgument, `OCI ${what} must be a list of strings`);
  return v as string[];
};

/** The agent's process spec for an OCI process in ROOT (`exec`: an extra process of a running container). */
export function processSpec(p: OciProcess | undefined, root: string, exec: boolean): ProcessSpec {
  const args = strings(p?.args, 'process.args');
  if (!args.length) throw new RpcError(Code.InvalidArgument, 'the OCI process has no args');
  const uid = p?.user?.uid ?? 0;
  const gid = p?.user?.gid ?? 0;
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0) throw new RpcError(Code.InvalidArgument, 'OCI process.user needs numeric uid and gid');
  const groups = p?.user?.additionalGids ?? [];
  if (!Array.isArray(groups) || groups.some((g) => !Number.isInteger(g) || g < 0)) throw new RpcError(Code.InvalidArgument, 'OCI process.user.additionalGids must be numbers');
  // The exact set the spec grants: drop everything, add its bounding set back.
  const caps = strings(p?.capabilities?.bounding, 'process.capabilities.bounding');
  return {
    root,
    args,
    env: strings(p?.env, 'process.env'),
    cwd: typeof p?.cwd === 'string' && p.cwd ? p.cwd : '/',
    user: `${uid}:${gid}`,
    groupAdd: groups.map(String),
    tty: p?.terminal === true,
    stdin: true,
    rows: p?.consoleSize?.height,
    cols: p?.consoleSize?.width,
    capDrop: ['ALL'],
    capAdd: caps.map((c) => c.replace(/^CAP_/, '')),
    noNewPrivs: p?.noNewPrivileges === true,
    exec,
  };
}

/** Mount points the agent makes itself in every root (proc, sys, dev, devpts, shm, mqueue, cgroup). */
const AGENT_MOUNTS = /^\/(proc|sys|dev)(\/|$)/;

export interface RootMounts {
  tmpfs: string[];
  /** Host paths to bind (by the caller, under the VM's share) and where they go in the root. */
  /** `recursive: false`: the host's mounts under HOSTPATH are not in the bind (they come as binds of their own). */
  binds: Array<{ hostPath: string; dest: string; readonly: boolean; recursive?: boolean }>;
  readonly: boolean;
}

/** The root's own mounts from the spec: tmpfs and binds; what the agent provides anyway is left to it. */
export function rootMounts(spec: OciSpec): RootMounts {
  const out: RootMounts = { tmpfs: [], binds: [], readonly: spec.root?.readonly === true };
  for (const m of spec.mounts ?? []) {
    if (typeof m?.destination !== 'string' || !m.destination.startsWith('/')) throw new RpcError(Code.InvalidArgument, 'an OCI mount needs an absolute destination');
    const opts = strings(m.options, 'mount options');
    const isBind = m.type === 'bind' || opts.includes('bind') || opts.includes('rbind');
    if (AGENT_MOUNTS.test(m.destination)) {
      continue; // also CRI's binds of the sandbox's /dev/shm and of /dev/termination-log
    } else if (isBind) {
      if (typeof m.source !== 'string' || !path.isAbsolute(m.source)) throw new RpcError(Code.InvalidArgument, `bind mount at ${m.destination} needs an absolute source`);
      // A read-only rbind is read-only at its top only (as runc's, without "rro"): the host's
      // mounts under it stay writable. In the guest it is all one 9p tree, so the volume is bound
      // without them and each is bound on its own, writable (which also leaves the host free to
      // unmount them: no copy of their mount points in the pod's share).
      const subs = opts.includes('ro') && opts.includes('rbind') && !opts.includes('rro') && fs.statSync(m.source, { throwIfNoEntry: false })?.isDirectory() ? mountsUnder(m.source).reverse() : [];
      out.binds.push({ hostPath: m.source, dest: m.destination, readonly: opts.includes('ro'), ...(subs.length ? { recursive: false } : {}) });
      for (const sub of subs) out.binds.push({ hostPath: sub, dest: path.join(m.destination, path.relative(m.source, sub)), readonly: false, recursive: false });
    } else if (m.type === 'tmpfs') {
      const keep = opts.filter((o) => /^(size|mode)=|^(ro|noexec|nosuid|nodev)$/.test(o));
      out.tmpfs.push(keep.length ? `${m.destination}:${keep.join(',')}` : m.destination);
    } else {
      throw new RpcError(Code.Unimplemented, `mount type "${m.type}" at ${m.destination} is not supported by the hyperbox shim`);
    }
  }
  return out;
}
