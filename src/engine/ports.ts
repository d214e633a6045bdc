/**
 * Published ports of a container VM: Docker's `-p`/`-P` specs checked and
 * turned into forwards of the VM driver's built-in network (for QEMU, `hostfwd`
 * rules, so a host port is held by the VM's process and freed when it exits),
 * with free host ports chosen for `-p PORT` and `-P`. `--network none` has none.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { conflict, invalid, notFound } from '../common/errors.js';
import type { PortForward } from '../vm/index.js';

export interface PortBinding {
  HostIp: string;
  HostPort: string;
}
export type PortMap = Record<string, PortBinding[] | null>;

/** The networks that exist in this mode (what `GET /networks` lists). */
export const DEFAULT_NETWORK = 'bridge';
export type NetworkMode = 'user' | 'none';

/** Docker's NetworkMode values as hyperbox understands them. */
export function networkModeOf(mode: string | undefined): NetworkMode {
  const m = mode ?? '';
  if (m === '' || m === 'default' || m === 'bridge' || m === 'slirp') return 'user';
  if (m === 'none') return 'none';
  if (m === 'host') throw invalid('network mode "host" is not supported by hyperbox: every container is its own VM with its own network stack');
  // The engine resolves it to the other container's pod VM, whose network this is.
  if (m.startsWith('container:')) return 'user';
  throw notFound(`network ${m} not found`);
}

/** "80", "80/tcp", "53/udp" → [port, proto]. */
export function parsePortKey(key: string): [number, 'tcp' | 'udp'] {
  const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(key);
  const port = m ? Number(m[1]) : NaN;
  if (!m || port < 1 || port > 65535) throw invalid(`invalid port specification: "${key}"`);
  return [port, (m[2] as 'tcp' | 'udp' | undefined) ?? 'tcp'];
}

export function normalizePortKey(key: string): string {
  const [port, proto] = parsePortKey(key);
  return `${port}/${proto}`;
}

/** Validates PortBindings and ExposedPorts from a create request. */
export function checkPorts(bindings: PortMap, exposed: Record<string, unknown>): { bindings: PortMap; exposed: Record<string, object> } {
  const out: PortMap = {};
  for (const [k, list] of Object.entries(bindings)) {
    const key = normalizePortKey(k);
    out[key] = (list ?? []).map((b) => {
      const hostIp = b.HostIp ?? '';
      if (hostIp && net.isIP(hostIp) !== 4) throw invalid(`invalid IP address: ${hostIp} (hyperbox publishes on IPv4 addresses)`);
      const hostPort = b.HostPort ?? '';
      if (hostPort && !(/^\d+$/.test(hostPort) && Number(hostPort) >= 1 && Number(hostPort) <= 65535)) throw invalid(`invalid host port: ${hostPort}`);
      return { HostIp: hostIp, HostPort: hostPort };
    });
  }
  const exp: Record<string, object> = {};
  for (const k of [...Object.keys(exposed), ...Object.keys(out)]) exp[normalizePortKey(k)] = {};
  return { bindings: out, exposed: exp };
}

async function probe(proto: 'tcp' | 'udp', ip: string, port: number): Promise<number> {
  if (proto === 'tcp') {
    return new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen({ host: ip, port, exclusive: true }, () => {
        const got = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(got));
      });
    });
  }
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind({ address: ip, port, exclusive: true }, () => {
      const got = s.address().port;
      s.close(() => resolve(got));
    });
  });
}

/**
 * Host ports for a start: fixed ports are checked free (a clear error instead of
 * QEMU failing), "" or publish-all ports get a free port chosen now.
 */
export async function allocatePorts(bindings: PortMap, exposed: Record<string, object>, publishAll: boolean): Promise<{ ports: PortMap; forwards: PortForward[] }> {
  const ports: PortMap = {};
  const forwards: PortForward[] = [];
  const taken = new Set<string>();
  for (const key of Object.keys(exposed)) {
    const [guestPort, proto] = parsePortKey(key);
    let list = bindings[key] ?? [];
    if (!list.length && publishAll) list = [{ HostIp: '', HostPort: '' }];
    if (!list.length) {
      ports[key] = null;
      continue;
    }
    ports[key] = [];
    for (const b of list) {
      const ip = b.HostIp || '0.0.0.0';
      let port = Number(b.HostPort || 0);
      try {
        port = await probe(proto, ip, port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRNOTAVAIL') throw invalid(`failed to bind port ${ip}:${b.HostPort}/${proto}: cannot assign requested address`);
        throw conflict(`Bind for ${ip}:${b.HostPort} failed: port is already allocated`);
      }
      const id = `${proto}:${ip}:${port}`;
      if (taken.has(id)) throw conflict(`Bind for ${ip}:${port} failed: port is already allocated`);
      taken.add(id);
      forwards.push({ proto, hostIp: ip, hostPort: port, guestPort });
      ports[key]!.push({ HostIp: ip, HostPort: String(port) });
    }
  }
  return { ports, forwards };
}

/** Host-side forwards of published ports already allocated (a re-attached VM's proxy). */
export function forwardsOf(ports: PortMap): PortForward[] {
  return Object.entries(ports).flatMap(([key, list]) => {
    const [guestPort, proto] = parsePortKey(key);
    return (list ?? []).map((b) => ({ proto, hostIp: b.HostIp || '0.0.0.0', hostPort: Number(b.HostPort), guestPort }));
  });
}
