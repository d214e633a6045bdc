/**
 * The subnet picker of bridge networks: a free /24 in 10.89.0.0/16 clear of the
 * host's networks and of other hyperbox networks, or a requested one, checked.
 * No bridge is made: the picker is driven through a NetworkManager over fake
 * metadata. (It is a private method: see the report asking for it to be exported.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HyperboxError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import type { MetadataStore } from '../../src/engine/metadata.js';
import { hostIpv4Networks } from '../../src/engine/net/bridge.js';
import { freeAddress } from '../../src/engine/net/addresses.js';
import { NetworkManager, type NetworkRecord } from '../../src/engine/net/networks.js';

type Pick = (subnet?: string, gateway?: string) => { subnet: string; gateway: string };

/** A manager that knows networks with these subnets, and its private picker. */
function picker(subnets: string[]): Pick {
  const records = subnets.map((s, i) => ({ Id: `${i}`.repeat(64).slice(0, 64), Name: `n${i}`, Subnet: s, Gateway: '', Bridge: '', Internal: false, Labels: {} }) as unknown as NetworkRecord);
  const metadata = { allRecords: () => records } as unknown as MetadataStore;
  const logger = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
  const mgr = new NetworkManager({ logger, metadata, dataRoot: '/nonexistent', members: () => [] });
  const pick = (mgr as unknown as { pickSubnet: Pick }).pickSubnet;
  assert.equal(typeof pick, 'function', 'NetworkManager.pickSubnet moved: update this test');
  return pick.bind(mgr);
}

const toInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
function overlaps(a: string, b: string): boolean {
  const [an, ap] = a.split('/') as [string, string];
  const [bn, bp] = b.split('/') as [string, string];
  const p = Math.min(Number(ap), Number(bp));
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return ((toInt(an) & mask) >>> 0) === ((toInt(bn) & mask) >>> 0);
}
/** The host's own networks (the picker avoids them too): expected values are computed around them. */
const hostNets = hostIpv4Networks().map(([a, p]) => `${a}/${p}`);
const free = (taken: string[]) => {
  for (let third = 0; third < 256; third++) {
    const s = `10.89.${third}.0/24`;
    if (![...taken, ...hostNets].some((t) => overlaps(s, t))) return s;
  }
  throw new Error('no free /24 on this host');
};
const kind = (k: string, pattern: RegExp) => (err: unknown) => err instanceof HyperboxError && err.kind === k && pattern.test(err.message);

describe('bridge subnet picker', () => {
  it('picks the first free /24 in 10.89.0.0/16, gateway .1', () => {
    const expected = free([]);
    assert.deepEqual(picker([])(), { subnet: expected, gateway: expected.replace(/0\/24$/, '1') });
  });

  it('skips subnets other networks use, whatever their size', () => {
    const taken = ['10.89.0.0/24', '10.89.1.0/24', '10.89.2.0/23'];
    const got = picker(taken)();
    assert.equal(got.subnet, free(taken));
    assert.ok(!['10.89.0.0/24', '10.89.1.0/24', '10.89.2.0/24', '10.89.3.0/24'].includes(got.subnet));
    assert.throws(() => picker(['10.89.0.0/16'])(), kind('conflict', /no free subnet left in 10\.89\.0\.0\/16: pass --subnet/));
  });

  it('takes a requested subnet, normalized to its network address, with .1 or the given gateway', () => {
    const pick = picker([]);
    assert.deepEqual(pick('10.123.45.67/24'), { subnet: '10.123.45.0/24', gateway: '10.123.45.1' });
    assert.deepEqual(pick('10.124.0.0/16', '10.124.200.1'), { subnet: '10.124.0.0/16', gateway: '10.124.200.1' });
    assert.deepEqual(pick('10.125.0.8/29'), { subnet: '10.125.0.8/29', gateway: '10.125.0.9' });
  });

  it('refuses a malformed subnet, a prefix outside /16-/29, and a gateway outside the subnet', () => {
    const pick = picker([]);
    for (const s of ['10.1.2.0', '10.1.2.0/8', '10.1.2.0/30', '10.1.2.300/24', 'ten/24', '10.1.2/24']) {
      assert.throws(() => pick(s), kind('invalid', /invalid subnet .*: expected an IPv4 CIDR with a prefix from \/16 to \/29/), s);
    }
    assert.throws(() => pick('10.126.0.0/24', '10.126.1.1'), kind('invalid', /gateway 10\.126\.1\.1 is not in subnet 10\.126\.0\.0\/24/));
  });

  it('refuses a requested subnet that overlaps another network or the host\'s', () => {
    assert.throws(() => picker(['10.127.0.0/16'])('10.127.5.0/24'), kind('conflict', /overlaps a network that already exists on this host/));
    assert.throws(() => picker(['10.128.5.0/24'])('10.128.0.0/16'), kind('conflict', /overlaps/), 'a wider request over a narrower network');
    const host = hostNets.find((n) => !n.startsWith('127.'));
    if (host) assert.throws(() => picker([])(`${host.split('/')[0]}/24`), kind('conflict', /overlaps/), `the host's ${host}`);
  });
});

describe('bridge address allocation', () => {
  const net = { Subnet: '10.88.16.0/28', Gateway: '10.88.16.1' };
  it('keeps a wanted address (a migrated container\'s) when it is a free host address of the subnet', () => {
    assert.equal(freeAddress(net, new Set(), '10.88.16.9'), '10.88.16.9');
    assert.equal(freeAddress(net, new Set(['10.88.16.9']), '10.88.16.9'), '10.88.16.2', 'taken: the first free one');
  });
  it('never hands out the network address, the gateway, the broadcast address or one outside the subnet', () => {
    for (const wanted of ['10.88.16.0', '10.88.16.1', '10.88.16.15', '10.88.0.2', '10.88.16.300', 'x']) assert.equal(freeAddress(net, new Set(), wanted), '10.88.16.2', wanted);
    const all = new Set(Array.from({ length: 13 }, (_, i) => `10.88.16.${i + 2}`));
    assert.equal(freeAddress(net, all), undefined);
    all.delete('10.88.16.14');
    assert.equal(freeAddress(net, all, '10.88.16.3'), '10.88.16.14');
  });
});
