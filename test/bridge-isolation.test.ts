/**
 * Isolation on a bridge network (issue 12, item 6), with real VMs on a
 * user-defined network: a VM sends only as itself (its MAC, its IPv4 address,
 * ARP about itself), hyperbox bridges carry no IPv6, and an `--internal`
 * network's DNS relays nothing outside. Every refusal has a control that
 * succeeds, so nothing passes because the network is simply broken.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';

const isRoot = process.getuid?.() === 0;
const NET = 'isonet';
const INTERNAL = 'isoint';
/** A listener in the guest that prints what every connection sends (to its log). */
const LISTENER = "exec nc -ll -p 7000 -e sh -c 'cat >&2'";

interface Endpoint {
  IPAddress: string;
  MacAddress: string;
  IPPrefixLen: number;
  Gateway: string;
}

describe('isolation on bridge networks', { skip: isRoot ? false : 'bridge networks need root' }, () => {
  let d: TestDaemon;
  let bridge: string;

  const endpoint = async (name: string, network = NET): Promise<Endpoint> =>
    JSON.parse((await d.run(['inspect', '-f', '{{json .NetworkSettings.Networks}}', name])).stdout)[network];

  const runDetached = async (name: string, network: string, cmd: string[]) => {
    // NET_ADMIN: the spoofing container changes its own MAC and address (outside Docker's default set).
    const r = await d.run(['run', '-d', '--cap-add', 'NET_ADMIN', '--network', network, '--name', name, 'busybox', ...cmd]);
    assert.equal(r.code, 0, r.stderr);
  };

  const exec = async (name: string, script: string) => {
    const r = await d.run(['exec', name, 'sh', '-c', script], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `exec in ${name}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    d = await startDaemonWithBusybox();
    for (const args of [[NET], ['--internal', INTERNAL]]) {
      const r = await d.run(['network', 'create', ...args]);
      assert.equal(r.code, 0, r.stderr);
    }
    bridge = JSON.parse((await d.run(['network', 'inspect', NET])).stdout)[0].Options['com.docker.network.bridge.name'];
    await runDetached('alpha', NET, ['sh', '-c', LISTENER]);
    await runDetached('beta', NET, ['sleep', '600']);
  });
  after(async () => {
    for (const c of (await d.run(['ps', '-aq'])).stdout.split('\n').filter(Boolean)) await d.run(['rm', '-f', c]);
    for (const n of [NET, INTERNAL]) await d.run(['network', 'rm', n]);
    await d?.stop();
  });

  it('lets a VM send only with its own MAC and IPv4 address, to other VMs and to the host', async () => {
    const a = await endpoint('alpha');
    const b = await endpoint('beta');
    const gwMac = fs.readFileSync(`/sys/class/net/${bridge}/address`, 'utf8').trim();
    const octets = a.IPAddress.split('.').map(Number);
    const spoofIp = [...octets.slice(0, 3), 200].join('.');
    assert.ok(![a.IPAddress, b.IPAddress, a.Gateway].includes(spoofIp));

    // What reaches the host on the gateway address, per sender.
    const got: Array<{ from: string; text: string }> = [];
    const srv = net.createServer((s) => {
      let text = '';
      s.on('data', (c) => (text += c));
      s.on('end', () => got.push({ from: s.remoteAddress!.replace(/^::ffff:/, ''), text: text.trim() }));
      s.on('error', () => undefined);
    });
    await new Promise<void>((ok) => srv.listen(0, '0.0.0.0', ok));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      // A listens; the host talking to it also gives the host a neighbour entry for A (checked last).
      await until(
        "A's listener",
        () =>
          new Promise<boolean>((resolve) => {
            const s = net.connect(7000, a.IPAddress, () => s.end('from-host\n', () => resolve(true)));
            s.on('error', () => resolve(false));
          }),
        60_000,
      );

      const script = `
        set -u
        A=${a.IPAddress} G=${a.Gateway} P=${port} ME=${b.IPAddress} MYMAC=${b.MacAddress} PFX=${b.IPPrefixLen}
        send() { if echo "$1" | nc -w 3 "$2" "$3" >/dev/null 2>&1; then echo "$1:sent"; else echo "$1:failed"; fi; }
        # Neighbours pinned: B needs no ARP of its own, only the frames it sends are judged.
        pin() { ip neigh replace $A lladdr ${a.MacAddress} dev eth0 nud permanent; ip neigh replace $G lladdr ${gwMac} dev eth0 nud permanent; }
        as_self() {
          ip link set eth0 address $MYMAC; ip -4 addr flush dev eth0; ip addr add $ME/$PFX dev eth0
          ip route replace default via $G; pin; arping -U -c 1 -I eth0 -s $ME $ME >/dev/null 2>&1; true
        }
        as_self; send ctl1 $A 7000; send ctl1-gw $G $P
        # Another address of the subnet, own MAC.
        ip -4 addr flush dev eth0; ip addr add ${spoofIp}/$PFX dev eth0; pin
        send spoof-ip $A 7000; send spoof-ip-gw $G $P
        # Own address, another MAC (announced, so replies would find it).
        as_self; ip link set eth0 address 02:42:de:ad:be:ef; pin; arping -U -c 1 -I eth0 -s $ME $ME >/dev/null 2>&1
        send spoof-mac $A 7000; send spoof-mac-gw $G $P
        # ARP claiming A's address, to take over the host's neighbour entry for it.
        as_self; sysctl -w net.ipv4.ip_nonlocal_bind=1 >/dev/null
        arping -U -c 2 -I eth0 -s $A $A >/dev/null 2>&1; arping -A -c 2 -I eth0 -s $A $A >/dev/null 2>&1
        sysctl -w net.ipv4.ip_nonlocal_bind=0 >/dev/null
        # Itself again: everything works.
        as_self; send ctl2 $A 7000; send ctl2-gw $G $P
      `;
      const out = (await exec('beta', script)).trim().split('\n');
      assert.deepEqual(out, [
        'ctl1:sent', 'ctl1-gw:sent',
        'spoof-ip:failed', 'spoof-ip-gw:failed',
        'spoof-mac:failed', 'spoof-mac-gw:failed',
        'ctl2:sent', 'ctl2-gw:sent',
      ]);

      // What arrived: at A (its log) and at the host, only B's own traffic.
      const log = await until('both controls in A\'s log', async () => {
        const r = await d.run(['logs', 'alpha']);
        const text = r.stdout + r.stderr;
        return text.includes('ctl1') && text.includes('ctl2') ? text : undefined;
      }, 10_000);
      assert.doesNotMatch(log, /spoof/);
      await until('both controls at the host', () => got.filter((g) => g.text.startsWith('ctl')).length === 2, 10_000);
      assert.deepEqual(
        got.map((g) => `${g.from} ${g.text}`).sort(),
        [`${b.IPAddress} ctl1-gw`, `${b.IPAddress} ctl2-gw`],
      );
      // The host still reaches A at A's MAC.
      const neigh = execFileSync('ip', ['neigh', 'show', a.IPAddress, 'dev', bridge], { encoding: 'utf8' });
      assert.match(neigh, new RegExp(`lladdr ${a.MacAddress}`, 'i'), neigh);
    } finally {
      srv.close();
    }
  });

  it('carries no IPv6: not on the bridge, not between VMs', async () => {
    assert.equal(fs.readFileSync(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, 'utf8').trim(), '1');
    assert.ok(!execFileSync('ip', ['-6', 'addr', 'show', 'dev', bridge], { encoding: 'utf8' }).includes('inet6'));
    const taps = fs.readdirSync(`/sys/class/net/${bridge}/brif`);
    assert.equal(taps.length, 2);
    for (const tap of taps) assert.equal(fs.readFileSync(`/proc/sys/net/ipv6/conf/${tap}/disable_ipv6`, 'utf8').trim(), '1', tap);

    // A's link-local address, once it is usable (not tentative).
    const linkLocal = (table: string) => {
      const row = table
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[5] === 'eth0' && f[0]!.startsWith('fe80'));
      if (!row || (parseInt(row[4]!, 16) & 0x40) !== 0) return undefined;
      return row[0]!.match(/.{4}/g)!.join(':');
    };
    const aLl = await until("A's link-local address", async () => linkLocal(await exec('alpha', 'cat /proc/net/if_inet6')), 30_000);
    const out = await exec(
      'beta',
      `
      ready() { grep '^fe80.* eth0$' /proc/net/if_inet6 | { read addr idx plen scope flags name && [ $(( 0x$flags & 0x40 )) -eq 0 ]; }; }
      i=0; until ready; do i=$((i + 1)); [ $i -lt 300 ] || { echo no-link-local; break; }; sleep 0.1; done
      ping6 -c 1 -W 2 ::1 >/dev/null 2>&1 && echo ipv6-up
      ping6 -c 3 -W 3 ${aLl}%eth0 >/dev/null 2>&1 && echo reached-a
      echo hello | nc -w 3 ${aLl}%eth0 7000 >/dev/null 2>&1 && echo connected-a
      echo done`,
    );
    assert.equal(out, 'ipv6-up\ndone\n');
    assert.doesNotMatch((await d.run(['logs', 'alpha'])).stderr, /hello/);
  });

  it('an --internal network answers its own names and relays no other', async () => {
    await runDetached('inner', INTERNAL, ['sleep', '600']);
    const inner = await endpoint('inner', INTERNAL);
    const r = await d.run(['run', '--rm', '--network', INTERNAL, 'busybox', 'sh', '-c', 'nslookup example.com; echo ---; nslookup inner']);
    const [outside, own] = r.stdout.split('---\n');
    assert.match(outside!, /REFUSED/, r.stdout);
    assert.doesNotMatch(outside!, /^Address:\s+(?!.*:53$)/m, 'no address for an outside name');
    assert.match(own!, new RegExp(`^Address:\\s+${inner.IPAddress.replace(/\./g, '\\.')}$`, 'm'), r.stdout);
    // Control: a network that is not internal does relay (whatever the host's resolver says, it is not REFUSED).
    const relayed = await d.run(['exec', 'beta', 'nslookup', 'example.com']);
    assert.doesNotMatch(relayed.stdout + relayed.stderr, /REFUSED/);
    assert.match(relayed.stdout + relayed.stderr, /NXDOMAIN|SERVFAIL|Address:\s+\d+\.\d+\.\d+\.\d+$/m);
  });
});
