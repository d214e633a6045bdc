/**
 * Bridge networks (issue 6, as root): TAP devices on a Linux bridge, NAT, an
 * address per container VM, name resolution inside a network and isolation
 * between networks. Real VMs (clones), the real CLI and the docker CLI.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fetchText, freePort, portFree } from './helpers/net.js';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';

const isRoot = process.getuid?.() === 0;



const SERVER = (text: string) => `mkdir -p /www && echo ${text} > /www/index.html && exec httpd -f -p 80 -h /www`;

describe('bridge networks', { skip: isRoot ? false : 'bridge networks need root' }, () => {
  let d: TestDaemon;
  const ids: Record<string, string> = {};
  before(async () => {
    d = await startDaemonWithBusybox();
    for (const n of ['front', 'back']) {
      const r = await d.run(['network', 'create', n]);
      assert.equal(r.code, 0, r.stderr);
      ids[n] = r.stdout.trim();
    }
  });
  after(async () => {
    for (const c of (await d.run(['ps', '-aq'])).stdout.split('\n').filter(Boolean)) await d.run(['rm', '-f', c]);
    for (const n of ['front', 'back']) await d.run(['network', 'rm', n]);
    await d?.stop();
  });

  it('containers on one network reach each other by name and alias; another network cannot reach them', async () => {
    const web = await d.run(['run', '-d', '--network', 'front', '--name', 'web', '--network-alias', 'www', 'busybox', 'sh', '-c', SERVER('front-page')]);
    assert.equal(web.code, 0, web.stderr);
    const info = JSON.parse((await d.run(['inspect', '-f', '{{json .NetworkSettings.Networks}}', 'web'])).stdout).front;
    assert.match(info.IPAddress, /^10\.\d+\.\d+\.\d+$/);
    assert.equal(info.NetworkID, ids.front);
    assert.deepEqual(info.Aliases, ['www']);
    assert.equal(JSON.parse((await d.run(['inspect', '-f', '{{json .HyperBox.Start}}', 'web'])).stdout).mode, 'clone');

    // By name, by alias and by short ID, from a second clone with its own address and MAC.
    const shortId = web.stdout.trim().slice(0, 12);
    const client = await d.run([
      'run', '--rm', '--network', 'front', 'busybox', 'sh', '-c',
      `until wget -qO- http://web/; do sleep 0.2; done; wget -qO- http://www/; wget -qO- http://${shortId}/; cat /sys/class/net/eth0/address`,
    ]);
    assert.equal(client.code, 0, client.stderr);
    const [a, b, c, mac] = client.stdout.trim().split('\n');
    assert.deepEqual([a, b, c], ['front-page', 'front-page', 'front-page']);
    assert.notEqual(mac, info.MacAddress, 'two clones on one bridge have different MACs');

    // From the other network: the name does not resolve and the address is unreachable.
    const other = await d.run([
      'run', '--rm', '--network', 'back', 'busybox', 'sh', '-c',
      `nslookup web >/dev/null 2>&1 && echo resolved; echo GET / | nc -w 2 ${info.IPAddress} 80 && echo reached; echo done`,
    ]);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stdout, 'done\n');
    // ...while the host reaches it directly, as Docker's bridge does.
    assert.equal(await fetchText(`http://${info.IPAddress}/`), 'front-page\n');
    assert.equal((await d.run(['rm', '-f', 'web'])).code, 0);
  });

  it('publishes ports through the host and reaches servers on the host', async () => {
    const hostPort = await freePort();
    const r = await d.run(['run', '-d', '--network', 'front', '-p', `${hostPort}:80`, '--name', 'pub', 'busybox', 'sh', '-c', SERVER('published')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await until('the page', () => fetchText(`http://127.0.0.1:${hostPort}/`).catch(() => undefined), 20_000), 'published\n');
    assert.ok((await d.run(['port', 'pub'])).stdout.includes(`80/tcp -> 0.0.0.0:${hostPort}`));
    const srv = http.createServer((_req, res) => res.end('host says hi\n'));
    await new Promise<void>((ok) => srv.listen(0, '0.0.0.0', ok));
    try {
      const gw = JSON.parse((await d.run(['network', 'inspect', '-f', '{{json .IPAM.Config}}', 'front'])).stdout)[0].Gateway;
      const out = await d.run(['run', '--rm', '--network', 'front', 'busybox', 'sh', '-c', `wget -qO- http://${gw}:${(srv.address() as net.AddressInfo).port}/; cat /etc/resolv.conf`]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, `host says hi\nnameserver ${gw}\n`);
    } finally {
      srv.close();
    }
    // The daemon dies (SIGKILL) and comes back: the VM kept its address; proxy and DNS return.
    await d.restart('SIGKILL');
    assert.equal(await until('the page after a daemon restart', () => fetchText(`http://127.0.0.1:${hostPort}/`).catch(() => undefined), 20_000), 'published\n');
    const named = await d.run(['run', '--rm', '--network', 'front', 'busybox', 'wget', '-qO-', 'http://pub/']);
    assert.equal(named.stdout, 'published\n', named.stderr);
    assert.equal((await d.run(['rm', '-f', 'pub'])).code, 0);
    await until(`port ${hostPort} to be free`, () => portFree(hostPort), 10_000);
  });

  it('connects stopped containers, refuses running ones, and removes a network only when unused', async () => {
    assert.equal((await d.run(['create', '--name', 'later', 'busybox', 'sleep', '300'])).code, 0);
    assert.equal((await d.run(['network', 'connect', '--alias', 'db', 'back', 'later'])).code, 0);
    assert.equal((await d.run(['start', 'later'])).code, 0);
    assert.match(JSON.parse((await d.run(['inspect', '-f', '{{json .NetworkSettings.Networks}}', 'later'])).stdout).back.IPAddress, /^10\./);
    const resolved = await d.run(['run', '--rm', '--network', 'back', 'busybox', 'sh', '-c', 'nslookup db | grep "^Address: 10\\."']);
    assert.match(resolved.stdout, /Address: 10\./, resolved.stderr);
    const running = await d.run(['network', 'disconnect', 'back', 'later']);
    assert.notEqual(running.code, 0);
    assert.match(running.stderr, /running/);
    const inUse = await d.run(['network', 'rm', 'back']);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.stderr, /active endpoints/);
    assert.equal((await d.run(['rm', '-f', 'later'])).code, 0);

    // Removal takes the bridge and its rules with it.
    const bridge = JSON.parse((await d.run(['network', 'inspect', 'back'])).stdout)[0].Options['com.docker.network.bridge.name'];
    assert.ok(fs.existsSync(`/sys/class/net/${bridge}`));
    assert.equal((await d.run(['network', 'rm', 'back'])).code, 0);
    assert.ok(!fs.existsSync(`/sys/class/net/${bridge}`));
    assert.doesNotMatch(execFileSync('iptables', ['-w', '-S'], { encoding: 'utf8' }), new RegExp(bridge));
    assert.equal((await d.run(['network', 'create', 'back'])).code, 0);
  });

  it('puts a pod on a network: one address, reachable by the pod name and its containers\' names', async () => {
    assert.equal((await d.run(['pod', 'create', '--name', 'pnet', '--network', 'front'])).code, 0);
    assert.equal((await d.run(['run', '-d', '--pod', 'pnet', '--name', 'psrv', 'busybox', 'sh', '-c', SERVER('pod-page')])).code, 0);
    const pod = JSON.parse((await d.run(['pod', 'inspect', 'pnet'])).stdout)[0];
    assert.match(pod.Endpoint.IPAddress, /^10\./);
    const r = await d.run(['run', '--rm', '--network', 'front', 'busybox', 'sh', '-c', 'until wget -qO- http://pnet/; do sleep 0.2; done; wget -qO- http://psrv/']);
    assert.equal(r.stdout, 'pod-page\npod-page\n', r.stderr);
    const inUse = await d.run(['network', 'rm', 'front']);
    assert.match(inUse.stderr, /pod pnet/);
    assert.equal((await d.run(['pod', 'rm', '-f', 'pnet'])).code, 0);
    // The TAP goes once the pod's QEMU has exited.
    await until('the pod TAP to go', () => !fs.readdirSync('/sys/class/net').some((n) => n.endsWith(pod.Id.slice(0, 9))), 20_000);
  });

  it('gives containers started at the same moment different addresses', async () => {
    const names = ['c1', 'c2', 'c3'];
    const runs = await Promise.all(names.map((n) => d.run(['run', '-d', '--network', 'front', '--name', n, 'busybox', 'sleep', '300'])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const ips = await Promise.all(names.map(async (n) => (await d.run(['inspect', '-f', '{{json .NetworkSettings.Networks}}', n])).stdout));
    const addrs = ips.map((j) => JSON.parse(j).front.IPAddress as string);
    assert.equal(new Set(addrs).size, 3, addrs.join(' '));
    assert.equal((await d.run(['rm', '-f', ...names])).code, 0);
  });

  it('the docker CLI creates, uses, inspects and removes a network', async () => {
    const created = await docker(d, ['network', 'create', 'dnet']);
    assert.equal(created.code, 0, created.stderr);
    assert.match((await docker(d, ['network', 'ls', '--format', '{{.Name}} {{.Driver}}'])).stdout, /^dnet bridge$/m);
    const r = await docker(d, ['run', '--rm', '--network', 'dnet', '--network-alias', 'alias1', 'busybox', 'sh', '-c', 'nslookup alias1 | grep -c "^Address: 10\\."']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1', 'the alias resolves to the container');
    assert.equal((await docker(d, ['network', 'inspect', '-f', '{{.Driver}} {{.Internal}}', 'dnet'])).stdout.trim(), 'bridge false');
    assert.equal((await docker(d, ['network', 'rm', 'dnet'])).code, 0);
    assert.notEqual((await docker(d, ['network', 'inspect', 'dnet'])).code, 0);
  });
});
