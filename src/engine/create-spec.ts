/**
 * `create`'s pure part: a client's request plus the image's config become the
 * container's spec, with Docker's defaults and Docker's validation errors. No
 * I/O: what it must look up (networks, pods, other containers) it asks through
 * `CreateContext`, so it is unit-tested with plain objects.
 */
import { isIP } from 'node:net';
import { invalid } from '../common/errors.js';
import { POD_LABEL } from '../common/labels.js';
import { DEFAULT_DISK_BYTES, MAX_DISK_BYTES, MIN_DISK_BYTES } from '../images/blockfs.js';
import type { ImageConfig } from '../images/store.js';
import { checkCapabilities } from './capabilities.js';
import { parseLogOptions } from './logs.js';
import { checkPorts, networkModeOf } from './ports.js';
import { NO_RESTART, validateRestartPolicy } from './restart.js';
import { parseSignal } from './signals.js';
import { MAC_RE } from './net/bridge.js';
import type { ContainerSpec, HostSpec } from './types.js';

export interface CreateRequest {
  name?: string;
  /** Network aliases (Docker's NetworkingConfig.EndpointsConfig[*].Aliases). */
  aliases?: string[];
  config: Partial<ContainerSpec> & { Image: string };
  host: Partial<HostSpec>;
  /** PidMode, UTSMode, IpcMode as asked: a VM has only its own (checked, not stored). */
  namespaces?: { pid?: string; uts?: string; ipc?: string };
}

export interface CreateContext {
  /** The user-defined network a NetworkMode names (undefined for predefined modes; throws 404 for unknown names). */
  userNetwork(mode: string | undefined): { Name: string } | undefined;
  /** The ID of the pod named NAME (throws 404). */
  podId(name: string): string;
  /** The pod ID of the container a `container:NAME` mode names, with its display name (throws 404). */
  containerPod(name: string): { name: string; podId?: string };
}

export interface CreateSpec {
  config: ContainerSpec;
  host: HostSpec;
  podId?: string;
  aliases?: string[];
  /** `--storage-opt size`: the writable layer's size in bytes (undefined: not given). */
  layerBytes?: number;
  /** The size of the container's writable disk: `--storage-opt size`, else DEFAULT_DISK_BYTES (10 GiB). */
  diskBytes: number;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Later entries win, by variable name; order of first appearance is kept. */
export function mergeEnv(base: string[], extra: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...base, ...extra]) out.set(e.split('=')[0]!, e);
  return [...out.values()];
}

/** The environment of a process in a container: its Env, Docker's PATH/HOSTNAME/TERM/HOME defaults, then EXTRA. */
export function processEnv(config: Pick<ContainerSpec, 'Env' | 'Hostname' | 'Tty'>, extra: string[] = []): string[] {
  let env = mergeEnv(config.Env, extra);
  if (!env.some((e) => e.startsWith('PATH='))) env = [DEFAULT_PATH, ...env];
  env = mergeEnv([`HOSTNAME=${config.Hostname}`], env);
  if (config.Tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  if (!env.some((e) => e.startsWith('HOME='))) env.push('HOME=/root');
  return env;
}

/**
 * `--add-host NAME:IP` (Docker also takes `NAME=IP`); IP is an IPv4 or IPv6
 * address or `host-gateway` (the host, as the container's gateway).
 */
export function parseExtraHost(spec: string): { name: string; ip: string } {
  const m = /^([^:=\s]+)[:=](.+)$/.exec(spec.trim());
  const name = m?.[1] ?? '';
  const ip = (m?.[2] ?? '').replace(/^\[(.*)\]$/, '$1');
  const validName = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,252})$/.test(name);
  const validIp = ip === 'host-gateway' || isIP(ip) !== 0;
  if (!validName || !validIp) throw invalid(`invalid IP address in add-host: "${spec}" (expected NAME:IP or NAME:host-gateway)`);
  return { name, ip };
}

/** /etc/hosts lines ("IP NAME") for a container's `--add-host`s, `host-gateway` being GATEWAY (skipped without one). */
export function extraHostLines(extra: string[] | undefined, gateway: string | undefined): string[] {
  return (extra ?? []).flatMap((spec) => {
    const { name, ip } = parseExtraHost(spec);
    const addr = ip === 'host-gateway' ? gateway : ip;
    return addr ? [`${addr} ${name}`] : [];
  });
}

/**
 * A size as Docker's units.RAMInBytes reads it: a number, an optional space,
 * an optional k/m/g/t/p (binary multiples, any case), optional `i` and `b`:
 * `10G`, `512m`, `1.5GiB`, `4096`. Undefined if it is not one.
 */
export function parseSizeBytes(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$/i.exec(v.trim());
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * 1024 ** ' kmgtp'.indexOf((m[2] ?? ' ').toLowerCase()));
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * `--storage-opt size=10G` in bytes (undefined: not given). `size` is the
 * only option; it sizes the container's writable disk (DEFAULT_DISK_BYTES,
 * 10 GiB, when not given).
 */
export function parseLayerLimit(opts: Record<string, string> | undefined): number | undefined {
  let bytes: number | undefined;
  for (const [k, v] of Object.entries(opts ?? {})) {
    if (k.toLowerCase() !== 'size') throw invalid(`invalid storage option "${k}": unknown storage option (hyperbox supports only size, e.g. --storage-opt size=10G)`);
    const n = parseSizeBytes(v);
    if (n === undefined) throw invalid(`invalid storage option size="${v}": invalid size: '${v}' (a number with an optional unit: 10G, 512m, 1.5GiB)`);
    if (n < MIN_DISK_BYTES) throw invalid(`invalid storage option size="${v}": the writable layer must be at least 16MB`);
    if (n > MAX_DISK_BYTES) throw invalid(`invalid storage option size="${v}": the writable layer can be at most 16TB`);
    bytes = n;
  }
  return bytes;
}

/** The size of a container's writable disk: `--storage-opt size`, else the default (10 GiB). */
export function diskBytesOf(host: Pick<HostSpec, 'StorageOpt'>): number {
  return parseLayerLimit(host.StorageOpt) ?? DEFAULT_DISK_BYTES;
}

/**
 * A VM has its own PID, UTS and IPC namespaces and cannot share the host's or
 * another VM's: such modes are refused, as Docker refuses what it cannot do.
 */
function checkNamespaces(ns: { pid?: string; uts?: string; ipc?: string }): void {
  const flags = { pid: '--pid', uts: '--uts', ipc: '--ipc' } as const;
  for (const kind of ['pid', 'uts', 'ipc'] as const) {
    const mode = ns[kind] ?? '';
    if (['', 'private', ...(kind === 'ipc' ? ['shareable', 'none'] : [])].includes(mode)) continue;
    const what = mode === 'host' ? "the host's" : mode.startsWith('container:') ? "another container's" : undefined;
    if (!what) throw invalid(`invalid ${kind.toUpperCase()} mode: ${mode}`);
    throw invalid(`${flags[kind]}=${mode} is not supported: every hyperbox container runs in its own VM, which cannot join ${what} ${kind.toUpperCase()} namespace (containers of a pod share IPC and network)`);
  }
}

/** A unicast MAC address, lower case (as dockerd checks --mac-address). */
function checkMac(mac: string): string {
  const m = mac.toLowerCase();
  if (!MAC_RE.test(m)) throw invalid(`invalid MAC address: ${mac}`);
  if (parseInt(m.slice(0, 2), 16) & 1) throw invalid(`invalid MAC address: ${mac} is a multicast address`);
  return m;
}

/** A --group-add entry: a group name or number, resolved in the guest against the image's /etc/group. */
function checkGroup(g: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(g)) throw invalid(`invalid group: ${JSON.stringify(g)}`);
  return g;
}

/** A legacy link, "NAME[:ALIAS]" or dockerd's stored "/NAME:/CONTAINER/ALIAS". */
export function parseLink(spec: string): { name: string; alias: string } {
  const [rawName = '', rawAlias, extra] = spec.split(':');
  const name = rawName.replace(/^\//, '');
  const alias = (rawAlias ?? name).split('/').at(-1) ?? '';
  if (!name || !alias || extra !== undefined || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(alias)) throw invalid(`invalid link: ${JSON.stringify(spec)} (expected NAME or NAME:ALIAS)`);
  return { name, alias };
}

export function buildCreateSpec(req: CreateRequest, id: string, image: ImageConfig['config'], ctx: CreateContext): CreateSpec {
  const imgCfg = image ?? {};
  const entrypoint = req.config.Entrypoint ?? imgCfg.Entrypoint ?? [];
  // As in Docker: an Entrypoint given at create time drops the image's Cmd.
  const cmd = req.config.Cmd?.length ? req.config.Cmd : req.config.Entrypoint ? [] : (imgCfg.Cmd ?? []);
  if (entrypoint.length + cmd.length === 0) throw invalid('no command specified');
  const config: ContainerSpec = {
    Image: req.config.Image,
    Cmd: cmd,
    Entrypoint: entrypoint,
    Env: mergeEnv(imgCfg.Env ?? [], req.config.Env ?? []),
    WorkingDir: req.config.WorkingDir || imgCfg.WorkingDir || '/',
    User: req.config.User || imgCfg.User || '',
    Hostname: req.config.Hostname || id.slice(0, 12),
    Tty: !!req.config.Tty,
    OpenStdin: !!req.config.OpenStdin,
    StdinOnce: !!req.config.StdinOnce,
    AttachStdin: !!req.config.AttachStdin,
    AttachStdout: req.config.AttachStdout ?? true,
    AttachStderr: req.config.AttachStderr ?? true,
    Labels: { ...(imgCfg.Labels ?? {}), ...(req.config.Labels ?? {}) },
    StopSignal: req.config.StopSignal || imgCfg.StopSignal || 'SIGTERM',
    StopTimeout: req.config.StopTimeout,
    ExposedPorts: {},
    MacAddress: req.config.MacAddress ? checkMac(req.config.MacAddress) : undefined,
  };
  checkNamespaces(req.namespaces ?? {});
  if (!config.WorkingDir.startsWith('/')) throw invalid(`the working directory '${config.WorkingDir}' is invalid, it needs to be an absolute path`);
  parseSignal(config.StopSignal);
  const host: HostSpec = {
    AutoRemove: !!req.host.AutoRemove,
    Memory: req.host.Memory ?? 0,
    NanoCpus: req.host.NanoCpus ?? 0,
    ConsoleSize: req.host.ConsoleSize,
    RestartPolicy: req.host.RestartPolicy ?? NO_RESTART,
    LogConfig: req.host.LogConfig,
    Binds: req.host.Binds,
    Mounts: req.host.Mounts,
    Tmpfs: req.host.Tmpfs,
    ReadonlyRootfs: !!req.host.ReadonlyRootfs,
    StorageOpt: req.host.StorageOpt,
    NetworkMode: req.host.NetworkMode || 'default',
    PublishAllPorts: !!req.host.PublishAllPorts,
    ExtraHosts: req.host.ExtraHosts?.length ? req.host.ExtraHosts.map(parseExtraHost).map(({ name, ip }) => `${name}:${ip}`) : undefined,
    CapAdd: req.host.CapAdd?.length ? req.host.CapAdd : undefined,
    CapDrop: req.host.CapDrop?.length ? req.host.CapDrop : undefined,
    Privileged: !!req.host.Privileged,
    Init: !!req.host.Init,
    GroupAdd: req.host.GroupAdd?.length ? req.host.GroupAdd.map(checkGroup) : undefined,
    VolumesFrom: req.host.VolumesFrom?.length ? req.host.VolumesFrom : undefined,
    Links: req.host.Links?.length ? req.host.Links.map((l) => (parseLink(l), l)) : undefined,
  };
  checkCapabilities('CapAdd', host.CapAdd);
  checkCapabilities('CapDrop', host.CapDrop);
  if (host.LogConfig?.Type && !['json-file', 'local'].includes(host.LogConfig.Type)) {
    throw invalid(`logging driver "${host.LogConfig.Type}" is not supported by hyperbox (json-file only)`);
  }
  try {
    parseLogOptions(host.LogConfig?.Config);
  } catch (err) {
    throw invalid((err as Error).message);
  }
  const policyError = validateRestartPolicy(host.RestartPolicy, host.AutoRemove);
  if (policyError) throw invalid(policyError);
  const ports = checkPorts(req.host.PortBindings ?? {}, { ...(imgCfg.ExposedPorts ?? {}), ...(req.config.ExposedPorts ?? {}) });
  host.PortBindings = ports.bindings;
  config.ExposedPorts = ports.exposed;
  const publishes = Object.values(ports.bindings).some((l) => l?.length) || host.PublishAllPorts;
  const userNet = ctx.userNetwork(host.NetworkMode);
  if (!userNet && networkModeOf(host.NetworkMode) === 'none' && publishes) {
    throw invalid('conflicting options: port publishing and the container type network mode');
  }
  if (host.Memory < 0 || (host.Memory > 0 && host.Memory < 6 * 1024 * 1024)) throw invalid('Minimum memory limit allowed is 6MB');
  if (host.NanoCpus < 0) throw invalid('Range of CPUs is from 0.01 to the number of CPUs available');
  let podId: string | undefined;
  const podName = req.config.Labels?.[POD_LABEL];
  if (podName) podId = ctx.podId(podName);
  if (host.NetworkMode?.startsWith('container:')) {
    // Docker's way of sharing a network namespace; in hyperbox, sharing a VM, which is what pods are.
    const target = ctx.containerPod(host.NetworkMode.slice('container:'.length));
    if (!target.podId) {
      throw invalid(`cannot join container ${target.name}'s network: it is not in a pod (a container shares a VM only through a pod: pod create, run --pod)`);
    }
    if (podId && podId !== target.podId) throw invalid(`conflicting options: --pod ${podName} and --network ${host.NetworkMode}`);
    podId = target.podId;
  }
  if (podId) {
    if (publishes) throw invalid(`ports of a pod are published by the pod (pod create -p), not by its containers`);
    if (host.Memory || host.NanoCpus) throw invalid(`a pod's containers share its VM: per-container --memory and --cpus are not supported in a pod`);
  }
  if (userNet && podId) throw invalid(`a pod's containers use the pod's network: --network ${userNet.Name} and a pod do not go together`);
  const aliases = (req.aliases ?? []).filter((a) => a);
  if (aliases.length && !userNet) throw invalid('network-scoped aliases are supported only for containers on user-defined networks');
  const layerBytes = parseLayerLimit(host.StorageOpt);
  return { config, host, podId, aliases: aliases.length ? aliases : undefined, layerBytes, diskBytes: layerBytes ?? DEFAULT_DISK_BYTES };
}
