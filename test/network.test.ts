/** User-mode networking and published ports (issue 6): real VMs, cloned and cold-booted. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchText, freePort, portFree } from './helpers/net.js';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';



/** Local address of the host's listening TCP sockets on a port ("0.0.0.0", "127.0.0.1"). */
function listenersOn(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hex}`) && f[3] === '0A')
    .map((f) => f[1]!.split(':')[0]!.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.'));
}

function apiGet(d: TestDaemon, p: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: d.socket, path: p }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(b || 'null') }));
      })
      .on('error', reject);
  });
}

function apiPost(d: TestDaemon, p: string, body: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: d.socket, path: p, method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(b || 'null') }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('networking and published ports', () => {
  let d: TestDaemon;
  let www: string;
  before(async () => {
    d = await startDaemonWithBusybox();
    www = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-www-'));
    fs.writeFileSync(path.join(www, 'index.html'), 'hello from a hyperbox VM\n');
  });
  after(async () => {
    await d?.stop();
    fs.rmSync(www, { recursive: true, force: true });
  });

  it('serves a published port from a cloned VM and frees it on rm', async () => {
    const hostPort = await freePort();
    const r = await d.run(['run', '-d', '-p', `${hostPort}:80`, '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const body = await until('the page', () => fetchText(`http://127.0.0.1:${hostPort}/`).catch(() => undefined), 20_000);
    assert.equal(body, 'hello from a hyperbox VM\n');
    assert.equal(JSON.parse((await d.run(['inspect', '-f', '{{json .HyperBox.Start}}', id])).stdout).mode, 'clone');
    const ports = JSON.parse((await d.run(['inspect', '-f', '{{json .NetworkSettings.Ports}}', id])).stdout);
    assert.deepEqual(ports, { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: String(hostPort) }] });
    assert.ok((await d.run(['ps'])).stdout.includes(`0.0.0.0:${hostPort}->80/tcp`));
    assert.equal((await d.run(['port', id])).stdout, `80/tcp -> 0.0.0.0:${hostPort}\n`);
    // A second container cannot take the same port: a clear error, not a QEMU failure.
    const clash = await d.run(['run', '-d', '-p', `${hostPort}:80`, 'busybox', 'true']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, /port is already allocated/);
    assert.equal((await d.run(['rm', '-f', id])).code, 0);
    await until(`port ${hostPort} to be free`, () => portFree(hostPort), 10_000);
  });

  it('picks random host ports for -p PORT and binds -p 127.0.0.1:... to loopback only', async () => {
    const loopPort = await freePort('127.0.0.1');
    const r = await d.run(['run', '-d', '-p', '80', '-p', `127.0.0.1:${loopPort}:80`, '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    try {
      const out = (await d.run(['port', id, '80'])).stdout.trim().split('\n');
      assert.equal(out.length, 2, out.join('|'));
      const random = out.find((l) => l.startsWith('0.0.0.0:'));
      assert.ok(random, out.join('|'));
      const port = Number(random.split(':')[1]);
      assert.ok(port > 0 && port !== loopPort);
      assert.equal(await until('the page', () => fetchText(`http://127.0.0.1:${port}/`).catch(() => undefined), 20_000), 'hello from a hyperbox VM\n');
      assert.equal(await fetchText(`http://127.0.0.1:${loopPort}/`), 'hello from a hyperbox VM\n');
      assert.deepEqual(listenersOn(loopPort), ['127.0.0.1']);
      assert.deepEqual(listenersOn(port), ['0.0.0.0']);
    } finally {
      await d.run(['rm', '-f', id]);
    }
  });

  for (const mode of ['clone', 'cold'] as const) {
    it(`lets the guest reach a server on the host's 0.0.0.0 through its gateway (${mode})`, async () => {
      const srv = http.createServer((_req, res) => res.end('host says hi\n'));
      await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
      const port = (srv.address() as net.AddressInfo).port;
      try {
        // As root the default network is a bridge: the host is its gateway (Docker's host-gateway).
        const script = `gw=$(ip route | awk '/^default/ {print $3}'); wget -qO- http://$gw:${port}/ && echo "gw=$gw" && cat /etc/resolv.conf`;
        const r = await d.run(['run', '--rm', ...(mode === 'cold' ? ['--no-clone'] : []), 'busybox', 'sh', '-c', script]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^host says hi\n/);
        const gw = /gw=(\S+)/.exec(r.stdout)?.[1];
        assert.match(gw ?? '', /^10\.88\.\d+\.1$/);
        assert.match(r.stdout, new RegExp(`nameserver ${gw!.replace(/\./g, '\\.')}`));
      } finally {
        srv.close();
      }
    });
  }

  it('--add-host adds /etc/hosts lines; host-gateway is the host, as the gateway', async () => {
    const srv = http.createServer((_req, res) => res.end('via host-gateway\n'));
    await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      const r = await d.run(['run', '--rm', '--add-host', 'db.example:192.0.2.7', '--add-host', 'host.docker.internal:host-gateway', 'busybox', 'sh', '-c', `cat /etc/hosts; wget -qO- http://host.docker.internal:${port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^192\.0\.2\.7\tdb\.example$/m);
      const gw = /^(\S+)\thost\.docker\.internal$/m.exec(r.stdout)?.[1];
      assert.ok(gw && gw !== '127.0.0.1', r.stdout);
      assert.match(r.stdout, /via host-gateway\n$/);
      const bad = await d.run(['run', '--rm', '--add-host', 'bad name:1.2.3.4', 'busybox', 'true']);
      assert.equal(bad.code, 125);
      assert.match(bad.stderr, /invalid IP address in add-host/);
    } finally {
      srv.close();
    }
  });

  it('--network none leaves only loopback', async () => {
    const r = await d.run(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'cat /proc/net/route | wc -l; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-ok; wget -T 2 -qO- http://10.0.2.2:1/ 2>&1; true']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], '1', 'a route exists: ' + r.stdout); // header line only
    assert.equal(lines[1], 'lo-ok');
    const bad = await d.run(['run', '--rm', '--network', 'none', '-p', '80', 'busybox', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /conflicting options/);
  });

  it('lists the predefined networks and refuses what it cannot create', async () => {
    const list = (await apiGet(d, '/networks')).body as Array<{ Name: string; Driver: string }>;
    assert.deepEqual(list.map((n) => [n.Name, n.Driver]), [['bridge', 'bridge'], ['none', 'null']]);
    const overlay = await apiPost(d, '/networks/create', { Name: 'mynet', Driver: 'overlay' });
    assert.equal(overlay.status, 400);
    assert.match((overlay.body as { message: string }).message, /driver "overlay" is not supported/);
    const predefined = await apiPost(d, '/networks/create', { Name: 'none' });
    assert.equal(predefined.status, 403);
    const missing = await d.run(['run', '--rm', '--network', 'nosuchnet', 'busybox', 'true']);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /network nosuchnet not found/);
  });
});
