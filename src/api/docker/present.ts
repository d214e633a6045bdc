/** Engine objects rendered in the shapes the Docker API returns. */
import type { Container } from '../../engine/container.js';
import { DEFAULT_NETWORK, networkModeOf, parsePortKey } from '../../engine/ports.js';
import type { BuiltinNetwork } from '../../vm/index.js';
import { PREDEFINED } from '../../engine/net/networks.js';

/** Published ports in the list form of `GET /containers/json`. */
function portList(c: Container) {
  const out: Array<{ IP?: string; PrivatePort: number; PublicPort?: number; Type: string }> = [];
  for (const [key, list] of Object.entries(c.running ? (c.record.Ports ?? {}) : {})) {
    const [port, proto] = parsePortKey(key);
    if (!list) out.push({ PrivatePort: port, Type: proto });
    else for (const b of list) out.push({ IP: b.HostIp, PrivatePort: port, PublicPort: Number(b.HostPort), Type: proto });
  }
  return out;
}

function mountList(c: Container) {
  return (c.record.MountPoints ?? []).map((m) => ({
    Type: m.Type,
    ...(m.Name ? { Name: m.Name } : {}),
    Source: m.Source,
    Destination: m.Destination,
    ...(m.Driver ? { Driver: m.Driver } : {}),
    Mode: m.Mode,
    RW: m.RW,
    Propagation: m.Propagation,
  }));
}

function networkMode(c: Container): string {
  return c.record.HostConfig.NetworkMode || 'default';
}

/** NetworkSettings.Networks: the user-mode network's fixed addresses (while running). */
function networks(c: Container, net: BuiltinNetwork) {
  const ep = c.running ? c.record.Endpoint : undefined;
  const named = c.record.HostConfig.NetworkMode;
  if (ep || (named && !PREDEFINED.includes(named) && !named.startsWith('container:'))) {
    return {
      [ep?.NetworkName ?? named!]: {
        NetworkID: ep?.NetworkId ?? '',
        EndpointID: ep ? c.id : '',
        Gateway: ep?.Gateway ?? '',
        IPAddress: ep?.IPAddress ?? '',
        IPPrefixLen: ep?.IPPrefixLen ?? 0,
        MacAddress: ep?.MacAddress ?? '',
        Aliases: c.record.NetworkAliases ?? null,
        DNSNames: ep ? c.dnsNames : null,
      },
    };
  }
  let mode: string;
  try {
    mode = networkModeOf(c.record.HostConfig.NetworkMode) === 'none' ? 'none' : DEFAULT_NETWORK;
  } catch {
    return {};
  }
  const up = c.running && mode !== 'none';
  return {
    [mode]: {
      NetworkID: mode,
      EndpointID: up ? c.id : '',
      Gateway: up ? net.gateway : '',
      IPAddress: up ? net.guest : '',
      IPPrefixLen: up ? net.prefix : 0,
      MacAddress: up ? '52:54:00:12:34:56' : '',
      DNSNames: null,
    },
  };
}

export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.round(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  return `${Math.round(h / 24)} days`;
}

export function statusText(c: Container): string {
  const st = c.record.State;
  if (st.Running) return `Up ${humanDuration(Date.now() - Date.parse(st.StartedAt))}${st.Paused ? ' (Paused)' : ''}`;
  if (st.Status === 'created') return 'Created';
  if (st.Status === 'restarting') return `Restarting (${st.ExitCode}) ${humanDuration(Date.now() - Date.parse(st.FinishedAt))} ago`;
  return `Exited (${st.ExitCode}) ${humanDuration(Date.now() - Date.parse(st.FinishedAt))} ago`;
}

export function containerSummary(c: Container, net: BuiltinNetwork) {
  const r = c.record;
  return {
    Id: r.Id,
    Names: [r.Name],
    Image: r.Config.Image,
    ImageID: r.ImageId,
    Command: [...r.Config.Entrypoint, ...r.Config.Cmd].map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' '),
    Created: Math.floor(Date.parse(r.Created) / 1000),
    Ports: portList(c),
    Labels: r.Config.Labels,
    State: r.State.Status,
    Status: statusText(c),
    HostConfig: { NetworkMode: networkMode(c) },
    NetworkSettings: { Networks: networks(c, net) },
    Mounts: mountList(c),
  };
}

export function containerInspect(c: Container, net: BuiltinNetwork) {
  const r = c.record;
  const args = [...r.Config.Entrypoint, ...r.Config.Cmd];
  return {
    Id: r.Id,
    Created: r.Created,
    Path: args[0] ?? '',
    Args: args.slice(1),
    State: {
      ...r.State,
      Restarting: r.State.Status === 'restarting',
      Dead: r.State.Status === 'dead',
    },
    Image: r.ImageId,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: c.logFile,
    Name: r.Name,
    RestartCount: r.RestartCount ?? 0,
    Driver: c.record.Storage === 'block' ? 'block' : 'overlay',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    HostConfig: {
      AutoRemove: r.HostConfig.AutoRemove,
      Memory: r.HostConfig.Memory,
      NanoCpus: r.HostConfig.NanoCpus,
      NetworkMode: networkMode(c),
      RestartPolicy: r.HostConfig.RestartPolicy?.Name ? r.HostConfig.RestartPolicy : { Name: 'no', MaximumRetryCount: 0 },
      Runtime: 'hyperbox',
      Binds: r.HostConfig.Binds ?? null,
      Mounts: r.HostConfig.Mounts ?? null,
      Tmpfs: r.HostConfig.Tmpfs ?? null,
      ReadonlyRootfs: !!r.HostConfig.ReadonlyRootfs,
      PortBindings: r.HostConfig.PortBindings ?? {},
      PublishAllPorts: !!r.HostConfig.PublishAllPorts,
      ConsoleSize: r.HostConfig.ConsoleSize ?? [0, 0],
      LogConfig: { Type: 'json-file', Config: r.HostConfig.LogConfig?.Config ?? {} },
      CapAdd: r.HostConfig.CapAdd ?? null,
      CapDrop: r.HostConfig.CapDrop ?? null,
      Privileged: !!r.HostConfig.Privileged,
      Init: r.HostConfig.Init || null,
      GroupAdd: r.HostConfig.GroupAdd ?? null,
      VolumesFrom: r.HostConfig.VolumesFrom ?? null,
      Links: r.HostConfig.Links ?? null,
      PidMode: '',
      UTSMode: '',
      IpcMode: 'private',
    },
    GraphDriver:
      c.record.Storage === 'block'
        ? { Name: 'block', Data: { Disk: `${c.dir}/disk.ext4` } }
        : { Name: 'overlay', Data: { UpperDir: `${c.dir}/upper`, MergedDir: `${c.dir}/rootfs` } },
    Mounts: mountList(c),
    Config: {
      Hostname: r.Config.Hostname,
      Domainname: '',
      User: r.Config.User,
      AttachStdin: r.Config.AttachStdin,
      AttachStdout: r.Config.AttachStdout,
      AttachStderr: r.Config.AttachStderr,
      Tty: r.Config.Tty,
      OpenStdin: r.Config.OpenStdin,
      StdinOnce: r.Config.StdinOnce,
      Env: r.Config.Env,
      Cmd: r.Config.Cmd,
      Image: r.Config.Image,
      Volumes: null,
      ExposedPorts: r.Config.ExposedPorts && Object.keys(r.Config.ExposedPorts).length ? r.Config.ExposedPorts : null,
      WorkingDir: r.Config.WorkingDir,
      Entrypoint: r.Config.Entrypoint.length ? r.Config.Entrypoint : null,
      OnBuild: null,
      Labels: r.Config.Labels,
      StopSignal: r.Config.StopSignal,
      ...(r.Config.StopTimeout !== undefined ? { StopTimeout: r.Config.StopTimeout } : {}),
      ...(r.Config.MacAddress ? { MacAddress: r.Config.MacAddress } : {}),
    },
    NetworkSettings: {
      Ports: c.running ? (r.Ports ?? {}) : {},
      Networks: networks(c, net),
      ...defaultNetworkAddress(c, net),
      MacAddress: '',
    },
    /** hyperbox's own: how this container's VM was started, phase by phase. */
    HyperBox: { Start: r.StartInfo ?? null, VmPid: r.VmPid ?? 0 },
  };
}

/** Docker's top-level NetworkSettings address: the container's on the default network, while it runs. */
function defaultNetworkAddress(c: Container, net: BuiltinNetwork): { IPAddress: string; Gateway: string; IPPrefixLen: number } {
  const ep = c.running ? c.record.Endpoint : undefined;
  if (ep?.NetworkName === DEFAULT_NETWORK) return { IPAddress: ep.IPAddress, Gateway: ep.Gateway, IPPrefixLen: ep.IPPrefixLen };
  if (c.running && !ep && onUserNetwork(c)) return { IPAddress: net.guest, Gateway: net.gateway, IPPrefixLen: net.prefix };
  return { IPAddress: '', Gateway: '', IPPrefixLen: 0 };
}

/** True when the container is on the user-mode network (not `none`). */
function onUserNetwork(c: Container): boolean {
  try {
    return networkModeOf(c.record.HostConfig.NetworkMode) === 'user';
  } catch {
    return false;
  }
}
