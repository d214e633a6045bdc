/**
 * Bridge networks: the default one (Docker's `docker0`: the network named
 * `bridge`, made by the daemon when it runs as root) and user-defined ones
 * (`network create`): their records (SQLite), address management, the TAP
 * endpoint of each VM on one, and each network's DNS server. Without root,
 * the default network is the VM driver's built-in user-mode network.
 */
import { createHash, randomBytes } from 'node:crypto';
import { conflict, forbidden, invalid, notFound } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { MetadataStore } from '../metadata.js';
import { BRIDGE_PREFIX, createTap, deleteTap, ensureBridge, hostIpv4Networks, linksWithPrefix, protectEndpoint, removeBridge, sweepProtections, unprotectEndpoint } from './bridge.js';
import type { GuestNetwork } from '../../agent/connection.js';
import type { Sandbox } from '../../sandbox/sandbox.js';
import type { VmTies } from '../../sandbox/ties.js';
import type { NetSpec, PoolNetProvider, PortForward } from '../../vm/index.js';
import { moveTapTo, poolTapProvider } from './pool-taps.js';
import { DEFAULT_NETWORK } from '../ports.js';
import { freeAddress, intToIp, ipToInt, overlaps } from './addresses.js';
import { NetworkDns } from './dns.js';
import { PortProxy } from './proxy.js';

export interface NetworkRecord {
  Id: string;
  Name: string;
  Created: string;
  Driver: 'bridge';
  Subnet: string;
  Gateway: string;
  Bridge: string;
  Internal: boolean;
  Labels: Record<string, string>;
  /** The default network (`bridge`): made by the daemon, not listed with user-defined ones. */
  Default?: boolean;
}

/** A container VM's place on a bridge network (kept in its record while it runs). */
export interface Endpoint {
  NetworkId: string;
  NetworkName: string;
  IPAddress: string;
  IPPrefixLen: number;
  Gateway: string;
  MacAddress: string;
  Tap: string;
}

export interface NetworkHost {
  logger: Logger;
  metadata: MetadataStore;
  dataRoot: string;
  /** Running containers' endpoints and names, for address allocation and DNS. */
  members(networkId: string): Array<{ endpoint: Endpoint; names: string[] }>;
  /** The default bridge's subnet (`--bip`/`default-subnet`, "10.88.0.1/24" or "10.88.0.0/24"); a free /20 in 10.88.0.0/16 if unset. */
  defaultSubnet?: string;
  /** `--bridge none`: no default bridge; the default network is the driver's user-mode one. */
  noDefaultBridge?: boolean;
}


/** Names the default network and `none` keep (Docker's predefined ones). */
export const PREDEFINED = ['bridge', 'default', 'none', 'host', 'slirp'];
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const PREFIX = 24;
/** The default bridge is larger (4094 addresses, as many VMs as a host can hold; Docker's is a /16). */
const DEFAULT_BRIDGE_PREFIX = 20;

/** The default network's ID: one per data root, so a restarted daemon finds its own. */
function defaultNetworkId(dataRoot: string): string {
  return createHash('sha256').update(`default:${dataRoot}`).digest('hex');
}

/** The Linux bridge of a data root's default network. */
export function defaultBridgeName(dataRoot: string): string {
  return `${BRIDGE_PREFIX}d${defaultNetworkId(dataRoot).slice(0, 8)}`;
}

export class NetworkManager {
  private readonly nets = new Map<string, NetworkRecord>();
  private readonly dns = new Map<string, NetworkDns>();
  /** Addresses handed out and not yet given back, per network: starts in flight included. */
  private readonly leased = new Map<string, Set<string>>();
  /** TAP names carry a tag of the daemon's data root: daemons never sweep each other's. */
  readonly tapPrefix: string;

  constructor(private readonly host: NetworkHost) {
    this.tapPrefix = `ht${createHash('sha256').update(host.dataRoot).digest('hex').slice(0, 4)}`;
    for (const r of host.metadata.allRecords<NetworkRecord>('networks')) this.nets.set(r.Id, r);
  }

  /** The default network as a bridge, or undefined when it is the driver's user-mode network (not root). */
  get defaultBridge(): NetworkRecord | undefined {
    return [...this.nets.values()].find((n) => n.Default);
  }

  /**
   * The default bridge, made (or re-made with a new subnet when `--bip`
   * changed and nothing runs on it) as root; without root there is none.
   */
  private ensureDefault(): void {
    const current = this.defaultBridge;
    if (this.host.noDefaultBridge) {
      // Turned off: forget it once nothing runs on it.
      if (current && !this.host.members(current.Id).length) this.remove(current);
      return;
    }
    if (process.getuid?.() !== 0) return;
    const wanted = this.host.defaultSubnet;
    if (current) {
      const same = !wanted || this.normalizeBip(wanted).subnet === current.Subnet;
      if (same || this.host.members(current.Id).length) return;
      this.remove(current);
    }
    const { subnet, gateway } = wanted ? this.normalizeBip(wanted) : this.pickSubnet(undefined, undefined, '10.88', DEFAULT_BRIDGE_PREFIX);
    const tag = defaultNetworkId(this.host.dataRoot);
    const net: NetworkRecord = {
      Id: tag,
      Name: DEFAULT_NETWORK,
      Created: new Date().toISOString(),
      Driver: 'bridge',
      Subnet: subnet,
      Gateway: gateway,
      Bridge: defaultBridgeName(this.host.dataRoot),
      Internal: false,
      Labels: {},
      Default: true,
    };
    this.nets.set(net.Id, net);
    this.host.metadata.saveRecord('networks', net);
  }

  /** Docker's `--bip` is the gateway's address with the prefix ("10.88.0.1/24"); a network address is taken too. */
  private normalizeBip(bip: string): { subnet: string; gateway: string } {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(bip);
    if (!m) throw invalid(`invalid default subnet "${bip}": expected an IPv4 CIDR such as 10.88.0.1/24`);
    const prefix = Number(m[2]);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const netAddr = (ipToInt(m[1]!) & mask) >>> 0;
    const gateway = ipToInt(m[1]!) === netAddr ? intToIp(netAddr + 1) : m[1]!;
    return { subnet: `${intToIp(netAddr)}/${prefix}`, gateway };
  }

  /** Re-creates bridges, rules and DNS servers (after a reboot, or a crash mid-way). */
  async init(): Promise<void> {
    try {
      this.ensureDefault();
    } catch (err) {
      this.host.logger.warn(`default network: ${(err as Error).message}; containers on it use the user-mode network`);
    }
    for (const net of this.nets.values()) {
      try {
        ensureBridge(this.spec(net));
        await this.startDns(net);
      } catch (err) {
        this.host.logger.warn(`network ${net.Name}: ${(err as Error).message}`);
      }
    }
  }

  /** TAP devices of this daemon that no running container owns. */
  sweepTaps(inUse: Set<string>): void {
    for (const tap of linksWithPrefix(this.tapPrefix)) if (!inUse.has(tap)) deleteTap(tap);
    sweepProtections(inUse);
  }

  /** The user-defined networks. */
  list(): NetworkRecord[] {
    return [...this.nets.values()].filter((n) => !n.Default).sort((a, b) => a.Name.localeCompare(b.Name));
  }

  /** The bridge a VM with this network mode goes on: a user-defined network, or the default bridge. */
  bridgeFor(mode: string | undefined): NetworkRecord | undefined {
    if (!mode || mode === 'default' || mode === DEFAULT_NETWORK) return this.defaultBridge;
    if (PREDEFINED.includes(mode) || mode.startsWith('container:')) return undefined;
    return this.get(mode);
  }

  find(idOrName: string): NetworkRecord | undefined {
    const all = this.list();
    const byPrefix = idOrName.length >= 3 ? all.filter((n) => n.Id.startsWith(idOrName)) : [];
    return all.find((n) => n.Name === idOrName) ?? all.find((n) => n.Id === idOrName) ?? (byPrefix.length === 1 ? byPrefix[0] : undefined);
  }

  get(idOrName: string): NetworkRecord {
    const n = this.find(idOrName);
    if (!n) throw notFound(`network ${idOrName} not found`);
    return n;
  }

  async create(opts: { name: string; subnet?: string; gateway?: string; internal?: boolean; labels?: Record<string, string> }): Promise<NetworkRecord> {
    if (!NAME_RE.test(opts.name)) throw invalid(`invalid network name "${opts.name}"`);
    if (PREDEFINED.includes(opts.name)) throw forbidden(`${opts.name} is a pre-defined network and cannot be created`);
    if (this.find(opts.name)?.Name === opts.name) throw conflict(`network with name ${opts.name} already exists`);
    if (process.getuid?.() !== 0) throw forbidden('bridge networks need root (TAP devices, a Linux bridge and NAT rules); the default network works without');
    const { subnet, gateway } = this.pickSubnet(opts.subnet, opts.gateway);
    const id = randomBytes(32).toString('hex');
    const net: NetworkRecord = {
      Id: id,
      Name: opts.name,
      Created: new Date().toISOString(),
      Driver: 'bridge',
      Subnet: subnet,
      Gateway: gateway,
      Bridge: `${BRIDGE_PREFIX}${id.slice(0, 10)}`,
      Internal: !!opts.internal,
      Labels: opts.labels ?? {},
    };
    ensureBridge(this.spec(net));
    this.nets.set(id, net);
    this.host.metadata.saveRecord('networks', net);
    await this.startDns(net).catch((err: Error) => this.host.logger.warn(`network ${net.Name}: no DNS: ${err.message}`));
    return net;
  }

  remove(net: NetworkRecord): void {
    this.dns.get(net.Id)?.close();
    this.dns.delete(net.Id);
    removeBridge(this.spec(net));
    this.nets.delete(net.Id);
    this.host.metadata.removeRecord('networks', net.Id);
  }

  /** Makes TAPs for warm-pool VMs (as root, when bridges are in use). */
  poolTaps(): PoolNetProvider {
    return poolTapProvider(this.tapPrefix);
  }

  /**
   * Gives a VM an address and a TAP device on the network (TAP: a warm-pool
   * VM's, moved onto the bridge): WANTEDIP if it is free there (a migrated VM
   * keeps its address when it can), else the first free one.
   */
  attach(net: NetworkRecord, containerId: string, tap?: string, wantedMac?: string, wantedIp?: string): Endpoint {
    const leased = this.leasesOf(net.Id);
    const ip = freeAddress(net, new Set([...this.host.members(net.Id).map((m) => m.endpoint.IPAddress), ...leased]), wantedIp);
    if (!ip) throw conflict(`network ${net.Name} has no free address left`);
    // Docker's convention: 02:42 and the IPv4 address, unique on the network; or the one asked for (--mac-address).
    const mac = wantedMac ?? ['02', '42', ...ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
    if (wantedMac && this.host.members(net.Id).some((m) => m.endpoint.MacAddress === mac)) {
      throw conflict(`MAC address ${mac} is already in use on network ${net.Name}`);
    }
    if (tap) moveTapTo(tap, net.Bridge);
    else {
      tap = `${this.tapPrefix}${containerId.slice(0, 9)}`;
      createTap(tap, net.Bridge);
    }
    leased.add(ip);
    // The VM may send only as itself: its MAC, its address (bridge.ts).
    try {
      protectEndpoint(tap, mac, ip, { fresh: true });
    } catch (err) {
      leased.delete(ip);
      deleteTap(tap);
      throw err;
    }
    return { NetworkId: net.Id, NetworkName: net.Name, IPAddress: ip, IPPrefixLen: Number(net.Subnet.split('/')[1]), Gateway: net.Gateway, MacAddress: mac, Tap: tap };
  }

  /**
   * Starts a VM on a bridge network: it gets a TAP and an address, its published
   * ports are proxied, and all of it is given back if the start fails (or, later,
   * when the VM is released).
   */
  async startOn(
    net: NetworkRecord,
    ownerId: string,
    forwards: PortForward[],
    start: (spec: NetSpec, guest: GuestNetwork) => Promise<Sandbox>,
    /** The TAP of a warm-pool VM the caller took, to use instead of a new one. */
    tap?: string,
    /** The container's --mac-address, if any. */
    mac?: string,
  ): Promise<{ sandbox: Sandbox; endpoint: Endpoint }> {
    const endpoint = this.attach(net, ownerId, tap, mac);
    let sandbox: Sandbox;
    try {
      sandbox = await start({ forwards: [], tap: endpoint.Tap }, guestNetworkOf(endpoint));
    } catch (err) {
      this.detach(endpoint);
      throw err;
    }
    try {
      await this.bindToVm(sandbox, endpoint, forwards);
    } catch (err) {
      sandbox.afterExit(() => this.detach(endpoint));
      sandbox.release();
      throw err;
    }
    return { sandbox, endpoint };
  }

  /**
   * Ties an endpoint to the VM on it: published ports are proxied to its
   * address, and releasing the VM closes the proxy and gives the TAP and
   * address back. (If the proxy cannot open, nothing is tied: the caller detaches.)
   * A VM adopted stalled (not attached yet) is tied the same way.
   */
  async bindToVm(sandbox: VmTies, ep: Endpoint, forwards: PortForward[]): Promise<void> {
    const proxy = await PortProxy.open(forwards, ep.IPAddress);
    // The host ports go at once (a restart may bind them again); TAP and address once QEMU is gone.
    sandbox.onRelease(() => proxy.close());
    sandbox.afterExit(() => this.detach(ep));
  }

  detach(ep: Endpoint): void {
    unprotectEndpoint(ep.Tap);
    deleteTap(ep.Tap);
    this.leasesOf(ep.NetworkId).delete(ep.IPAddress);
  }

  /** An endpoint that survived a daemon restart keeps its address. */
  adopt(ep: Endpoint): void {
    this.leasesOf(ep.NetworkId).add(ep.IPAddress);
    protectEndpoint(ep.Tap, ep.MacAddress, ep.IPAddress);
  }

  private leasesOf(networkId: string): Set<string> {
    let set = this.leased.get(networkId);
    if (!set) this.leased.set(networkId, (set = new Set()));
    return set;
  }

  /** Daemon stop: DNS servers close; the default bridge goes too unless VMs stay on it (live restore). */
  async shutdown(opts: { keepBridges?: boolean } = {}): Promise<void> {
    for (const d of this.dns.values()) d.close();
    this.dns.clear();
    const def = this.defaultBridge;
    // Every VM is stopped by now: TAPs whose clean-up still waited for their QEMU go here.
    if (!opts.keepBridges) this.sweepTaps(new Set());
    if (def && !opts.keepBridges) {
      try {
        removeBridge(this.spec(def));
      } catch (err) {
        this.host.logger.warn(`default network: ${(err as Error).message}`);
      }
    }
  }

  private spec(net: NetworkRecord) {
    return { bridge: net.Bridge, subnet: net.Subnet, gateway: net.Gateway, prefix: Number(net.Subnet.split('/')[1]), internal: net.Internal };
  }

  private async startDns(net: NetworkRecord): Promise<void> {
    this.dns.get(net.Id)?.close();
    // An --internal network has no way out, its DNS included.
    const server = new NetworkDns(net.Gateway, (name) => this.resolve(net.Id, name), this.host.logger, { relay: !net.Internal });
    await server.start();
    this.dns.set(net.Id, server);
  }

  private resolve(networkId: string, name: string): string[] {
    // Docker's default bridge has no container names in its DNS.
    if (this.nets.get(networkId)?.Default) return [];
    return this.host
      .members(networkId)
      .filter((m) => m.names.some((n) => n.toLowerCase() === name))
      .map((m) => m.endpoint.IPAddress);
  }

  /** A free /PREFIX in POOL.0.0/16 (or the one asked for), clear of the host's own networks and of other hyperbox networks. */
  private pickSubnet(subnet?: string, gateway?: string, pool = '10.89', prefix = PREFIX): { subnet: string; gateway: string } {
    const taken: Array<[number, number]> = [
      ...hostIpv4Networks().map(([a, p]) => [ipToInt(a), p] as [number, number]),
      ...[...this.nets.values()].map((n) => [ipToInt(n.Subnet.split('/')[0]!), Number(n.Subnet.split('/')[1])] as [number, number]),
    ];
    if (subnet) {
      const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(subnet);
      const prefix = Number(m?.[2]);
      if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || prefix < 16 || prefix > 29) throw invalid(`invalid subnet ${subnet}: expected an IPv4 CIDR with a prefix from /16 to /29`);
      const mask = (0xffffffff << (32 - prefix)) >>> 0;
      const net = (ipToInt(m[1]!) & mask) >>> 0;
      if (taken.some(([a, p]) => overlaps(net, prefix, a, p))) throw conflict(`subnet ${subnet} overlaps a network that already exists on this host`);
      const gw = gateway ?? intToIp(net + 1);
      if (!overlaps(ipToInt(gw), 32, net, prefix)) throw invalid(`gateway ${gw} is not in subnet ${subnet}`);
      return { subnet: `${intToIp(net)}/${prefix}`, gateway: gw };
    }
    for (let third = 0; third < 256; third += 2 ** (24 - prefix)) {
      const net = ipToInt(`${pool}.${third}.0`);
      if (!taken.some(([a, p]) => overlaps(net, prefix, a, p))) return { subnet: `${intToIp(net)}/${prefix}`, gateway: intToIp(net + 1) };
    }
    throw conflict(`no free subnet left in ${pool}.0.0/16: pass --subnet`);
  }
}

/** What the agent configures on eth0 for a bridge endpoint: the network's DNS is on its gateway. */
export function guestNetworkOf(ep: Endpoint): GuestNetwork {
  return { ipv4: `${ep.IPAddress}/${ep.IPPrefixLen}`, gateway: ep.Gateway, dns: ep.Gateway, mac: ep.MacAddress };
}
