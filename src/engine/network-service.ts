/**
 * Network operations as the API asks for them: create, remove, prune, connect
 * and disconnect, with Docker's rules about who uses a network, and their
 * events. The bridges, addresses and DNS themselves are net/networks.ts's.
 */
import { conflict, forbidden, invalid, notFound } from '../common/errors.js';
import type { EngineContext } from './context.js';
import { PREDEFINED, type NetworkRecord } from './net/networks.js';

/** The user-defined network a NetworkMode names, if it names one (404 for an unknown name). */
export function userNetworkOf(ctx: Pick<EngineContext, 'networks'>, mode: string | undefined): NetworkRecord | undefined {
  if (!mode || PREDEFINED.includes(mode) || mode.startsWith('container:')) return undefined;
  return ctx.networks.get(mode);
}

export class NetworkService {
  constructor(private readonly ctx: EngineContext) {}

  list(): NetworkRecord[] {
    return this.ctx.networks.list();
  }

  get(idOrName: string): NetworkRecord {
    return this.ctx.networks.get(idOrName);
  }

  /** The default network when it is a bridge (as root), else undefined (the driver's user-mode network). */
  defaultBridge(): NetworkRecord | undefined {
    return this.ctx.networks.defaultBridge;
  }

  userNetwork(mode: string | undefined): NetworkRecord | undefined {
    return userNetworkOf(this.ctx, mode);
  }

  async create(opts: { name: string; subnet?: string; gateway?: string; internal: boolean; labels: Record<string, string> }): Promise<NetworkRecord> {
    const net = await this.ctx.networks.create(opts);
    this.ctx.events.publish('network', 'create', net.Id, { name: net.Name, type: net.Driver });
    return net;
  }

  /** Names of the containers (in any state) and pods set to use a network. */
  users(net: NetworkRecord): string[] {
    const uses = (mode: string | undefined) => mode === net.Name || mode === net.Id;
    return [
      ...this.ctx.registry.list().filter((c) => uses(c.record.HostConfig.NetworkMode)).map((c) => c.shortName),
      ...this.ctx.pods.list().filter((p) => uses(p.record.NetworkMode)).map((p) => `pod ${p.name}`),
    ];
  }

  remove(idOrName: string): void {
    const net = this.ctx.networks.get(idOrName);
    const users = this.users(net);
    if (users.length) throw forbidden(`error while removing network: network ${net.Name} id ${net.Id} has active endpoints (${users.join(', ')})`);
    this.ctx.networks.remove(net);
    this.ctx.events.publish('network', 'destroy', net.Id, { name: net.Name, type: net.Driver });
  }

  /** Removes every network nobody uses; returns their names. */
  prune(): string[] {
    const deleted: string[] = [];
    for (const net of this.list()) {
      if (this.users(net).length) continue;
      this.remove(net.Id);
      deleted.push(net.Name);
    }
    return deleted;
  }

  /**
   * `network connect`: a VM's NIC is fixed when it starts, so a container moves
   * to a network while it is stopped, and has one network at a time.
   */
  connect(idOrName: string, container: string, aliases: string[]): void {
    const net = this.ctx.networks.get(idOrName);
    const c = this.ctx.registry.get(container);
    if (c.running) throw conflict(`container ${c.shortName} is running: hyperbox cannot add a NIC to a running VM; stop it, connect, start it`);
    if (c.record.PodId) throw invalid(`container ${c.shortName} is in a pod and uses its network`);
    const current = this.userNetwork(c.record.HostConfig.NetworkMode);
    if (current && current.Id !== net.Id) throw conflict(`container ${c.shortName} is on network ${current.Name}: a hyperbox container VM has one network; disconnect it first`);
    c.record.HostConfig.NetworkMode = net.Name;
    c.record.NetworkAliases = aliases.length ? aliases : c.record.NetworkAliases;
    c.save();
    this.ctx.events.container(c, 'update');
  }

  disconnect(idOrName: string, container: string): void {
    const net = this.ctx.networks.get(idOrName);
    const c = this.ctx.registry.get(container);
    if (this.userNetwork(c.record.HostConfig.NetworkMode)?.Id !== net.Id) throw notFound(`container ${c.shortName} is not connected to network ${net.Name}`);
    if (c.running) throw conflict(`container ${c.shortName} is running: hyperbox cannot remove a running VM's NIC; stop it first`);
    c.record.HostConfig.NetworkMode = 'default';
    c.record.NetworkAliases = undefined;
    c.save();
    this.ctx.events.container(c, 'update');
  }
}
