/**
 * The DNS server of a bridge network, on its gateway address (what containers
 * on it have in resolv.conf), like Docker's embedded DNS: names of the
 * network's running containers (name, aliases, short ID) resolve to their
 * addresses; anything else is relayed to the host's resolver, except on an
 * `--internal` network, which reaches nothing outside: there it is REFUSED.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import dnsPacket from 'dns-packet';
import type { Logger } from '../../common/logger.js';

/** Relays in flight at once per network: a guest flooding queries cannot exhaust the daemon's sockets. */
const MAX_RELAYS = 64;

/** Addresses of a container name on this network, [] if it is none of them. */
export type NameLookup = (name: string) => string[];

/** Where names that are not the network's go: the host's first IPv4 nameserver. */
export type Upstream = () => { address: string; port: number } | undefined;

const hostResolver: Upstream = () => {
  try {
    const text = fs.readFileSync('/etc/resolv.conf', 'utf8');
    const address = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/m.exec(text)?.[1];
    return address ? { address, port: 53 } : undefined;
  } catch {
    return undefined;
  }
};

export interface NetworkDnsOptions {
  /** Relay names that are not the network's to the upstream resolver (default true); false answers them REFUSED. */
  relay?: boolean;
  /** Where relayed queries go (default: the host's first IPv4 nameserver). */
  upstream?: Upstream;
}

const REFUSED = 5;
const SERVFAIL = 2;

export class NetworkDns {
  private socket: dgram.Socket | undefined;
  private relays = 0;
  private readonly upstream: Upstream;
  private readonly relayOutside: boolean;

  /** The 4th argument is the options, or (older form) just the upstream. */
  constructor(
    private readonly address: string,
    private readonly lookup: NameLookup,
    private readonly logger: Logger,
    options: NetworkDnsOptions | Upstream = {},
  ) {
    const opts = typeof options === 'function' ? { upstream: options } : options;
    this.upstream = opts.upstream ?? hostResolver;
    this.relayOutside = opts.relay ?? true;
  }

  async start(): Promise<void> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    socket.on('message', (msg, rinfo) => this.answer(msg, rinfo));
    socket.on('error', (err) => this.logger.warn(`dns ${this.address}: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(53, this.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private reply(packet: Buffer, to: dgram.RemoteInfo): void {
    this.socket?.send(packet, to.port, to.address);
  }

  /** Queries come from untrusted guests: anything malformed is dropped. */
  private answer(msg: Buffer, from: dgram.RemoteInfo): void {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const q = query.questions?.[0];
    if (query.type !== 'query' || !q) return;
    const name = q.name.replace(/\.$/, '').toLowerCase();
    const ips = this.lookup(name);
    if (ips.length) {
      // A container name has an IPv4 address only: other types get an empty answer, not a relay.
      const answers = q.type === 'A' ? ips.map((ip) => ({ type: 'A' as const, name: q.name, ttl: 0, data: ip })) : [];
      this.reply(dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER, questions: [q], answers }), from);
      return;
    }
    if (!this.relayOutside) return this.fail(query, from, REFUSED);
    this.relay(msg, query, from);
  }

  private fail(query: dnsPacket.Packet, to: dgram.RemoteInfo, rcode: number): void {
    this.reply(dnsPacket.encode({ type: 'response', id: query.id, flags: (rcode === REFUSED ? 0 : dnsPacket.RECURSION_AVAILABLE) | rcode, questions: query.questions }), to);
  }

  private relay(msg: Buffer, query: dnsPacket.Packet, from: dgram.RemoteInfo): void {
    const server = this.upstream();
    const fail = () => this.fail(query, from, SERVFAIL);
    if (!server || this.relays >= MAX_RELAYS) return fail();
    this.relays++;
    const up = dgram.createSocket('udp4');
    let done = false;
    const finish = (answer?: Buffer) => {
      if (done) return;
      done = true;
      this.relays--;
      clearTimeout(timer);
      up.close();
      if (answer) this.reply(answer, from);
      else fail();
    };
    const timer = setTimeout(() => finish(), 3000);
    up.on('error', () => finish());
    up.on('message', (answer) => finish(answer));
    up.send(msg, server.port, server.address);
  }
}
