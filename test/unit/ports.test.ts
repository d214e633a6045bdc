/** Published ports: port specs, create-time validation, network modes, and host port allocation. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { HyperboxError } from '../../src/common/errors.js';
import { allocatePorts, checkPorts, forwardsOf, networkModeOf, normalizePortKey, parsePortKey } from '../../src/engine/ports.js';

const kind = (k: string, pattern: RegExp) => (err: unknown) => err instanceof HyperboxError && err.kind === k && pattern.test(err.message);

describe('port specs', () => {
  it('reads "80", "80/tcp" and "53/udp"; tcp by default', () => {
    assert.deepEqual(parsePortKey('80'), [80, 'tcp']);
    assert.deepEqual(parsePortKey('80/tcp'), [80, 'tcp']);
    assert.deepEqual(parsePortKey('53/udp'), [53, 'udp']);
    assert.deepEqual(parsePortKey('65535'), [65535, 'tcp']);
    assert.equal(normalizePortKey('8080'), '8080/tcp');
    assert.equal(normalizePortKey('53/udp'), '53/udp');
  });

  it('refuses ports out of range, other protocols and junk', () => {
    for (const k of ['0', '65536', '80/sctp', '80/TCP', 'http', '', '-1', '80-90', ' 80', '80/']) {
      assert.throws(() => parsePortKey(k), kind('invalid', /invalid port specification/), JSON.stringify(k));
    }
  });
});

describe('checkPorts', () => {
  it('normalizes keys and bindings, and exposes every bound port', () => {
    const { bindings, exposed } = checkPorts(
      { '80': [{ HostIp: '', HostPort: '8080' }], '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }], '9000/tcp': null },
      { '443': {}, '80/tcp': {} },
    );
    assert.deepEqual(bindings, { '80/tcp': [{ HostIp: '', HostPort: '8080' }], '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }], '9000/tcp': [] });
    assert.deepEqual(Object.keys(exposed).sort(), ['443/tcp', '53/udp', '80/tcp', '9000/tcp']);
  });

  it('fills in missing HostIp/HostPort as empty strings', () => {
    const { bindings } = checkPorts({ '80': [{} as { HostIp: string; HostPort: string }] }, {});
    assert.deepEqual(bindings, { '80/tcp': [{ HostIp: '', HostPort: '' }] });
  });

  it('refuses IPv6 or malformed host addresses, bad host ports, and bad keys', () => {
    assert.throws(() => checkPorts({ '80': [{ HostIp: '::1', HostPort: '80' }] }, {}), kind('invalid', /invalid IP address: ::1 \(hyperbox publishes on IPv4 addresses\)/));
    assert.throws(() => checkPorts({ '80': [{ HostIp: 'localhost', HostPort: '80' }] }, {}), kind('invalid', /invalid IP address/));
    for (const p of ['0', '65536', 'http', '80-81', '-1']) assert.throws(() => checkPorts({ '80': [{ HostIp: '', HostPort: p }] }, {}), kind('invalid', /invalid host port/), p);
    assert.throws(() => checkPorts({}, { 'x/tcp': {} }), kind('invalid', /invalid port specification: "x\/tcp"/));
  });
});

describe('network modes', () => {
  it('maps Docker\'s names to user mode or none', () => {
    for (const m of [undefined, '', 'default', 'bridge', 'slirp', 'container:web']) assert.equal(networkModeOf(m), 'user', String(m));
    assert.equal(networkModeOf('none'), 'none');
  });

  it('refuses host networking with a reason, and unknown networks as not found', () => {
    assert.throws(() => networkModeOf('host'), kind('invalid', /network mode "host" is not supported by hyperbox/));
    assert.throws(() => networkModeOf('mynet'), kind('not_found', /^network mynet not found$/));
  });
});

describe('forwardsOf', () => {
  it('turns allocated bindings back into forwards (0.0.0.0 for an empty address)', () => {
    assert.deepEqual(
      forwardsOf({ '80/tcp': [{ HostIp: '', HostPort: '8080' }, { HostIp: '127.0.0.1', HostPort: '9090' }], '53/udp': [{ HostIp: '0.0.0.0', HostPort: '5353' }], '443/tcp': null }),
      [
        { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, guestPort: 80 },
        { proto: 'tcp', hostIp: '127.0.0.1', hostPort: 9090, guestPort: 80 },
        { proto: 'udp', hostIp: '0.0.0.0', hostPort: 5353, guestPort: 53 },
      ],
    );
    assert.deepEqual(forwardsOf({}), []);
  });
});

describe('allocatePorts (loopback, ephemeral ports only)', () => {
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });
  const listening = async (): Promise<number> => {
    const s = net.createServer();
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as net.AddressInfo).port;
  };

  it('picks free ports for empty host ports and publish-all, and leaves unpublished ports null', async () => {
    const { ports, forwards } = await allocatePorts(
      { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
      { '80/tcp': {}, '53/udp': {}, '9000/tcp': {} },
      false,
    );
    assert.equal(ports['53/udp'], null);
    assert.equal(ports['9000/tcp'], null);
    const [b] = ports['80/tcp']!;
    assert.equal(b!.HostIp, '127.0.0.1');
    assert.ok(Number(b!.HostPort) > 0);
    assert.deepEqual(forwards, [{ proto: 'tcp', hostIp: '127.0.0.1', hostPort: Number(b!.HostPort), guestPort: 80 }]);

    const all = await allocatePorts({}, { '80/tcp': {}, '53/udp': {} }, true);
    assert.equal(all.forwards.length, 2);
    assert.deepEqual(all.forwards.map((f) => [f.proto, f.hostIp, f.guestPort]), [['tcp', '0.0.0.0', 80], ['udp', '0.0.0.0', 53]]);
    assert.ok(all.forwards.every((f) => f.hostPort > 0));
  });

  it('refuses a host port already in use, as a conflict', async () => {
    const port = await listening();
    await assert.rejects(
      allocatePorts({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] }, { '80/tcp': {} }, false),
      kind('conflict', new RegExp(`Bind for 127\\.0\\.0\\.1:${port} failed: port is already allocated`)),
    );
  });

  it('refuses the same host port twice in one container', async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    const twice = [{ HostIp: '127.0.0.1', HostPort: String(port) }];
    await assert.rejects(allocatePorts({ '80/tcp': twice, '81/tcp': twice }, { '80/tcp': {}, '81/tcp': {} }, false), kind('conflict', /port is already allocated/));
  });

  it('says so when the address is not the host\'s', async () => {
    await assert.rejects(allocatePorts({ '80/tcp': [{ HostIp: '192.0.2.1', HostPort: '' }] }, { '80/tcp': {} }, false), kind('invalid', /cannot assign requested address/));
  });
});
