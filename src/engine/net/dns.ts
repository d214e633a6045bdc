/**
 * The DNS server of a bridge network, on its gateway address (what containers
 * on it have in resolv.conf), like Docker's embedded DNS: names of the
 * network's running containers (name, aliases, short ID) resolve to their
 * addresses; anything else is relayed to the host's resolver.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import dnsPacket from 'dns-packet';
import type { Logger } from '../../common/logger.js';

/** Addresses of a container name on this network, [] if it is none of them. */
export type NameLookup = (name: string) => string[];

function upstreamServer(): string | undefined {
  try {
    const text = fs.readFileSync('/etc/resolv.conf', 'utf8');
    return /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/m.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

export class NetworkDns {
  private socket: dgram.Socket | undefined;

  constructor(
    private readonly address: string,
    private readonly lookup: NameLookup,
    private readonly logger: Logger,
  ) {}

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
    this.relay(msg, query, from);
  }

  private relay(msg: Buffer, query: dnsPacket.Packet, from: dgram.RemoteInfo): void {
    const server = upstreamServer();
    const fail = () =>
      this.reply(dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_AVAILABLE | 2 /* SERVFAIL */, questions: query.questions }), from);
    if (!server) return fail();
    const up = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      up.close();
      fail();
    }, 3000);
    up.on('error', () => {
      clearTimeout(timer);
      up.close();
      fail();
    });
    up.on('message', (answer) => {
      clearTimeout(timer);
      up.close();
      this.reply(answer, from);
    });
    up.send(msg, 53, server);
  }
}
