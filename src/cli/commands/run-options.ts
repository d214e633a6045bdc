/**
 * `run` and `create` options as the docker CLI spells them, turned into a
 * Docker API create body (publish specs, mounts, restart policies, env files).
 */
import { NO_CLONE_LABEL, POD_LABEL } from '../../common/labels.js';
import { terminalSize } from '../attach.js';
import { ExitError } from '../exit-error.js';
import { parseBytes, parseCpus } from '../units.js';

export interface RunOptions {
  interactive?: boolean;
  tty?: boolean;
  detach?: boolean;
  rm?: boolean;
  pod?: string;
  networkAlias?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  name?: string;
  entrypoint?: string;
  hostname?: string;
  memory?: string;
  cpus?: string;
  clone?: boolean;
  restart?: string;
  logDriver?: string;
  logOpt?: string[];
  storageOpt?: string[];
  volume?: string[];
  mount?: string[];
  tmpfs?: string[];
  addHost?: string[];
  readOnly?: boolean;
  publish?: string[];
  publishAll?: boolean;
  network?: string;
  capAdd?: string[];
  capDrop?: string[];
  privileged?: boolean;
  init?: boolean;
}

export function splitKeyValue(kv: string): [string, string] {
  const i = kv.indexOf('=');
  if (i <= 0) throw new ExitError(125, `invalid argument "${kv}": must be key=value`);
  return [kv.slice(0, i), kv.slice(i + 1)];
}

/** `--storage-opt size=10G` flags as the API's StorageOpt map (the daemon checks the values). */
export function parseStorageOpts(flags: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of flags) {
    const i = f.indexOf('=');
    if (i <= 0) throw new ExitError(125, `invalid storage option "${f}": expected size=N (e.g. --storage-opt size=10G)`);
    out[f.slice(0, i)] = f.slice(i + 1);
  }
  return out;
}

/** `--restart no|always|unless-stopped|on-failure[:N]`. */
export function parseRestart(v: string | undefined): { Name: string; MaximumRetryCount: number } {
  if (!v) return { Name: 'no', MaximumRetryCount: 0 };
  const m = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(v);
  if (!m || (m[2] !== undefined && m[1] !== 'on-failure')) throw new ExitError(125, `invalid restart policy format: ${v}`);
  return { Name: m[1]!, MaximumRetryCount: m[2] ? Number(m[2]) : 0 };
}

/** `-p [ip:][hostPort:]containerPort[/proto]` into ExposedPorts and PortBindings. */
export function parsePublish(specs: string[]): { exposed: Record<string, object>; bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> } {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const spec of specs) {
    const [addr, proto = 'tcp'] = spec.split('/') as [string, string?];
    const parts = addr.split(':');
    if (parts.length > 3 || !['tcp', 'udp'].includes(proto)) throw new ExitError(125, `invalid port format for --publish: ${spec}`);
    const container = parts[parts.length - 1]!;
    const hostPort = parts.length >= 2 ? parts[parts.length - 2]! : '';
    const hostIp = parts.length === 3 ? parts[0]! : '';
    if (!/^\d+$/.test(container) || (hostPort && !/^\d+$/.test(hostPort))) throw new ExitError(125, `invalid port format for --publish: ${spec}`);
    const key = `${container}/${proto}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: hostIp, HostPort: hostPort });
  }
  return { exposed, bindings };
}

/** `--mount type=bind,source=/a,target=/b,readonly` into a HostConfig.Mounts entry. */
export function parseMount(spec: string) {
  const m: { Type: string; Source?: string; Target?: string; ReadOnly?: boolean; TmpfsOptions?: { SizeBytes?: number; Mode?: number } } = { Type: 'volume' };
  for (const kv of spec.split(',')) {
    const [k, v] = kv.split('=') as [string, string?];
    if (k === 'type') m.Type = v ?? '';
    else if (k === 'source' || k === 'src') m.Source = v;
    else if (k === 'target' || k === 'destination' || k === 'dst') m.Target = v;
    else if (k === 'readonly' || k === 'ro') m.ReadOnly = v === undefined || v === 'true' || v === '1';
    else if (k === 'tmpfs-size') m.TmpfsOptions = { ...m.TmpfsOptions, SizeBytes: parseBytes(v ?? '', '--mount tmpfs-size') };
    else if (k === 'tmpfs-mode') m.TmpfsOptions = { ...m.TmpfsOptions, Mode: parseInt(v ?? '', 8) };
    else throw new ExitError(125, `invalid argument "${spec}" for "--mount" flag: unexpected key '${k}' in '${kv}'`);
  }
  return m;
}

export function createBody(image: string, command: string[], o: RunOptions) {
  const size = terminalSize();
  const publish = parsePublish(o.publish ?? []);
  return {
    Image: image,
    Cmd: command.length ? command : null,
    Entrypoint: o.entrypoint !== undefined ? (o.entrypoint === '' ? [''] : [o.entrypoint]) : null,
    Env: (o.env ?? []).map((e) => (e.includes('=') ? e : process.env[e] !== undefined ? `${e}=${process.env[e]}` : e)).filter((e) => e.includes('=')),
    WorkingDir: o.workdir ?? '',
    User: o.user ?? '',
    Hostname: o.hostname ?? '',
    Tty: !!o.tty,
    OpenStdin: !!o.interactive,
    StdinOnce: !!o.interactive,
    AttachStdin: !!o.interactive && !o.detach,
    AttachStdout: !o.detach,
    AttachStderr: !o.detach,
    Labels: { ...(o.clone === false ? { [NO_CLONE_LABEL]: '1' } : {}), ...(o.pod ? { [POD_LABEL]: o.pod } : {}) },
    ExposedPorts: publish.exposed,
    NetworkingConfig: o.networkAlias?.length && o.network ? { EndpointsConfig: { [o.network]: { Aliases: o.networkAlias } } } : undefined,
    HostConfig: {
      Binds: o.volume ?? [],
      Mounts: (o.mount ?? []).map(parseMount),
      ExtraHosts: o.addHost,
      Tmpfs: Object.fromEntries((o.tmpfs ?? []).map((t) => [t.split(':')[0]!, t.split(':').slice(1).join(':')])),
      ReadonlyRootfs: !!o.readOnly,
      PortBindings: publish.bindings,
      PublishAllPorts: !!o.publishAll,
      NetworkMode: o.network ?? 'default',
      AutoRemove: !!o.rm,
      RestartPolicy: parseRestart(o.restart),
      StorageOpt: o.storageOpt ? parseStorageOpts(o.storageOpt) : undefined,
      LogConfig: o.logDriver || o.logOpt ? { Type: o.logDriver ?? 'json-file', Config: Object.fromEntries((o.logOpt ?? []).map(splitKeyValue)) } : undefined,
      Memory: o.memory ? parseBytes(o.memory, '-m, --memory') : 0,
      NanoCpus: o.cpus ? parseCpus(o.cpus) : 0,
      ConsoleSize: o.tty && size ? [size.h, size.w] : [0, 0],
      CapAdd: o.capAdd,
      CapDrop: o.capDrop,
      Privileged: !!o.privileged,
      Init: o.init ? true : undefined,
    },
  };
}

