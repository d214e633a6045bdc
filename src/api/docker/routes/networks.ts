/**
 * /networks routes. hyperbox has user-mode networking only (QEMU's slirp: every
 * VM has its own private NAT'ed network), so the networks that exist are the
 * default one (named "bridge", as Docker clients expect, driver "slirp") and
 * "none". User-defined networks need a bridge mode that does not exist yet.
 */
import { conflict, notFound, notImplemented } from '../../../common/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { DEFAULT_NETWORK, networkModeOf } from '../../../engine/ports.js';
import { USER_NET } from '../../../vm/qemu.js';
import type { RouteTable } from '../server.js';

const CREATED = '2024-01-01T00:00:00Z';

function networkJson(name: string, engine: Engine) {
  const user = name === DEFAULT_NETWORK;
  const members = engine.list().filter((c) => {
    try {
      return c.running && networkModeOf(c.record.HostConfig.NetworkMode) === (user ? 'user' : 'none');
    } catch {
      return false;
    }
  });
  return {
    Name: name,
    Id: name,
    Created: CREATED,
    Scope: 'local',
    Driver: user ? 'slirp' : 'null',
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: null, Config: user ? [{ Subnet: USER_NET.subnet, Gateway: USER_NET.gateway }] : [] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(
      members.map((c) => [c.id, { Name: c.name.replace(/^\//, ''), EndpointID: c.id, MacAddress: '', IPv4Address: user ? `${USER_NET.guest}/${USER_NET.prefix}` : '', IPv6Address: '' }]),
    ),
    Options: user
      ? {
          'io.hyperbox.network.mode': 'user',
          'io.hyperbox.network.description':
            'QEMU user-mode networking: each container VM has its own private NAT network (guest 10.0.2.15, host 10.0.2.2, DNS 10.0.2.3); containers reach each other only through published ports',
        }
      : {},
    Labels: {},
  };
}

const NAMES = [DEFAULT_NETWORK, 'none'];

export function networkRoutes(r: RouteTable, engine: Engine): void {
  r.add('GET', '/networks', (ctx) => ctx.send(200, NAMES.map((n) => networkJson(n, engine))));
  r.add('GET', '/networks/:id', (ctx) => {
    const id = ctx.params.id!;
    const name = id === 'slirp' || id === 'default' ? DEFAULT_NETWORK : id;
    if (!NAMES.includes(name)) throw notFound(`network ${id} not found`);
    ctx.send(200, networkJson(name, engine));
  });
  r.add('POST', '/networks/create', () => {
    throw notImplemented('network create is not supported yet in hyperbox: user-defined networks need bridge mode (containers have user-mode networking only)');
  });
  r.add('POST', '/networks/prune', (ctx) => ctx.send(200, { NetworksDeleted: [] }));
  r.add('DELETE', '/networks/:id', (ctx) => {
    if (NAMES.includes(ctx.params.id!)) throw conflict(`${ctx.params.id} is a pre-defined network and cannot be removed`);
    throw notFound(`network ${ctx.params.id} not found`);
  });
  for (const p of ['/networks/:id/connect', '/networks/:id/disconnect']) {
    r.add('POST', p, () => {
      throw notImplemented('connecting containers to networks is not supported yet in hyperbox: user-defined networks need bridge mode');
    });
  }
}
