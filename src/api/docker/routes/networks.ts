/**
 * /networks routes. The predefined networks are the default one (QEMU's user
 * mode, every VM on its own private NAT'ed network; named "bridge", as Docker
 * clients expect, driver "slirp") and "none". User-defined networks are real
 * bridges (as root): a TAP per container VM, NAT, DNS for container names.
 */
import { z } from 'zod';
import { conflict, invalid, notFound } from '../../../common/errors.js';
import type { Container } from '../../../engine/container.js';
import type { Engine } from '../../../engine/engine.js';
import type { NetworkRecord } from '../../../engine/net/networks.js';
import { DEFAULT_NETWORK, networkModeOf } from '../../../engine/ports.js';
import { labelsMatch } from '../../../engine/container-query.js';
import { parseFilters } from '../http.js';
import type { RouteTable } from '../server.js';

const CREATED = '2024-01-01T00:00:00Z';

interface NetworkView {
  Name: string;
  Id: string;
  Created: string;
  Driver: string;
  Internal: boolean;
  Subnets: Array<{ Subnet: string; Gateway: string }>;
  /** Running members and their address (with prefix) and MAC on the network. */
  Members: Array<[Container, { ipv4: string; mac: string }]>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

/** A network as Docker's API shows one; the fields hyperbox has no use for get their fixed values. */
function networkResource(n: NetworkView) {
  return {
    Name: n.Name,
    Id: n.Id,
    Created: n.Created,
    Scope: 'local',
    Driver: n.Driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: n.Subnets },
    Internal: n.Internal,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(n.Members.map(([c, a]) => [c.id, { Name: c.shortName, EndpointID: c.id, MacAddress: a.mac, IPv4Address: a.ipv4, IPv6Address: '' }])),
    Options: n.Options,
    Labels: n.Labels,
  };
}

/** The predefined networks: the user-mode one (named `bridge`) and `none`. */
function networkJson(name: string, engine: Engine) {
  const user = name === DEFAULT_NETWORK;
  // As root the default network is a bridge (docker0's equivalent).
  const bridge = user ? engine.networks.defaultBridge() : undefined;
  if (bridge) return userNetworkJson(bridge, engine);
  const net = engine.driver.builtinNetwork;
  const members = engine.registry.list().filter((c) => {
    try {
      return c.running && networkModeOf(c.record.HostConfig.NetworkMode) === (user ? 'user' : 'none');
    } catch {
      return false;
    }
  });
  return networkResource({
    Name: name,
    Id: name,
    Created: CREATED,
    Driver: user ? 'slirp' : 'null',
    Internal: false,
    Subnets: user ? [{ Subnet: net.subnet, Gateway: net.gateway }] : [],
    Members: members.map((c) => [c, { ipv4: user ? `${net.guest}/${net.prefix}` : '', mac: '' }]),
    Options: user
      ? {
          'io.hyperbox.network.mode': 'user',
          'io.hyperbox.network.description':
            `the VM driver's built-in NAT network: each container VM has its own private one (guest ${net.guest}, host ${net.gateway}, DNS ${net.dns}); containers reach each other only through published ports`,
        }
      : {},
    Labels: {},
  });
}

function userNetworkJson(net: NetworkRecord, engine: Engine) {
  return networkResource({
    Name: net.Name,
    Id: net.Id,
    Created: net.Created,
    Driver: net.Driver,
    Internal: net.Internal,
    Subnets: [{ Subnet: net.Subnet, Gateway: net.Gateway }],
    Members: engine.registry
      .list()
      .filter((c) => c.running && c.record.Endpoint?.NetworkId === net.Id)
      .map((c) => [c, { ipv4: `${c.record.Endpoint!.IPAddress}/${c.record.Endpoint!.IPPrefixLen}`, mac: c.record.Endpoint!.MacAddress }]),
    Options: { 'com.docker.network.bridge.name': net.Bridge, ...(net.Default ? { 'com.docker.network.bridge.default_bridge': 'true' } : {}) },
    Labels: net.Labels,
  });
}

const NAMES = [DEFAULT_NETWORK, 'none'];

const createSchema = z
  .object({
    Name: z.string().min(1),
    Driver: z.string().nullish(),
    Internal: z.boolean().nullish(),
    EnableIPv6: z.boolean().nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
    IPAM: z
      .object({ Config: z.array(z.object({ Subnet: z.string().nullish(), Gateway: z.string().nullish() }).passthrough()).nullish() })
      .passthrough()
      .nullish(),
  })
  .passthrough();

const connectSchema = z
  .object({ Container: z.string().min(1), EndpointConfig: z.object({ Aliases: z.array(z.string()).nullish() }).passthrough().nullish() })
  .passthrough();

/** dockerd's network list filters: name (substring), id (prefix), label, driver, type (builtin or custom), scope. */
function networkFilter(f: Record<string, string[]>): (n: { Name: string; Id: string; Driver: string; Scope?: string; Labels?: Record<string, string> }) => boolean {
  const known = ['name', 'id', 'label', 'driver', 'type', 'scope'];
  for (const k of Object.keys(f)) if (!known.includes(k)) throw invalid(`invalid filter '${k}'`);
  return (n) =>
    (!f.name || f.name.some((x) => n.Name.includes(x))) &&
    (!f.id || f.id.some((x) => n.Id.startsWith(x))) &&
    labelsMatch(f.label ?? [], n.Labels ?? {}) &&
    (!f.driver || f.driver.includes(n.Driver)) &&
    (!f.scope || f.scope.includes(n.Scope ?? 'local')) &&
    (!f.type || f.type.includes(NAMES.includes(n.Name) ? 'builtin' : 'custom'));
}

export function networkRoutes(r: RouteTable, engine: Engine): void {
  r.add('GET', '/networks', (ctx) => {
    const all = [...NAMES.map((n) => networkJson(n, engine)), ...engine.networks.list().map((n) => userNetworkJson(n, engine))];
    ctx.send(200, all.filter(networkFilter(parseFilters(ctx))));
  });
  r.add('GET', '/networks/:id', (ctx) => {
    const id = ctx.params.id!;
    const name = id === 'slirp' || id === 'default' ? DEFAULT_NETWORK : id;
    if (NAMES.includes(name)) return ctx.send(200, networkJson(name, engine));
    ctx.send(200, userNetworkJson(engine.networks.get(id), engine));
  });
  r.add('POST', '/networks/create', async (ctx) => {
    const b = await ctx.json(createSchema);
    if (b.Driver && b.Driver !== 'bridge') throw invalid(`network driver "${b.Driver}" is not supported by hyperbox (bridge is)`);
    if (b.EnableIPv6) throw invalid('IPv6 networks are not supported by hyperbox');
    const ipam = b.IPAM?.Config?.[0];
    const net = await engine.networks.create({ name: b.Name, subnet: ipam?.Subnet ?? undefined, gateway: ipam?.Gateway ?? undefined, internal: !!b.Internal, labels: b.Labels ?? {} });
    ctx.send(201, { Id: net.Id, Warning: '' });
  });
  r.add('POST', '/networks/prune', (ctx) => {
    ctx.send(200, { NetworksDeleted: engine.networks.prune() });
  });
  r.add('DELETE', '/networks/:id', (ctx) => {
    if (NAMES.includes(ctx.params.id!)) throw conflict(`${ctx.params.id} is a pre-defined network and cannot be removed`);
    engine.networks.remove(ctx.params.id!);
    ctx.send(204);
  });
  r.add('POST', '/networks/:id/connect', async (ctx) => {
    const b = await ctx.json(connectSchema);
    if (NAMES.includes(ctx.params.id!)) throw invalid(`a container joins ${ctx.params.id} when it is disconnected from its user-defined network`);
    engine.networks.connect(ctx.params.id!, b.Container, b.EndpointConfig?.Aliases ?? []);
    ctx.send(200);
  });
  r.add('POST', '/networks/:id/disconnect', async (ctx) => {
    const b = await ctx.json(connectSchema);
    if (NAMES.includes(ctx.params.id!)) throw notFound(`container ${b.Container} is not connected to network ${ctx.params.id}`);
    engine.networks.disconnect(ctx.params.id!, b.Container);
    ctx.send(200);
  });
}
