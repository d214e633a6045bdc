/**
 * No container reaches the host's loopback (issue 12): services bound to
 * 127.0.0.0/8 or ::1 on the host, the daemon's own TCP API included, get no
 * connection from a container in any network mode (default network, cold and
 * cloned, a user-defined bridge network, a pod, `--network none`), whatever
 * address it tries (its gateway, QEMU user-mode's host alias 10.0.2.2, the
 * host's own addresses). Control case: a host service on 0.0.0.0 is reachable
 * through the gateway, so the probes do work.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/net.js';

interface Listener {
  label: string;
  port: number;
  hits: string[];
  close(): void;
}

async function tcpListener(host: string): Promise<Listener> {
  const hits: string[] = [];
  const srv = net.createServer((s) => {
    hits.push(`${s.remoteAddress}`);
    s.end('LEAK\n');
  });
  await new Promise<void>((r) => srv.listen({ host, port: 0 }, r));
  return { label: `tcp ${host}`, port: (srv.address() as net.AddressInfo).port, hits, close: () => srv.close() };
}

async function udpListener(host: string): Promise<Listener> {
  const hits: string[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (_m, rinfo) => hits.push(rinfo.address));
  await new Promise<void>((r) => sock.bind(0, host, r));
  return { label: `udp ${host}`, port: sock.address().port, hits, close: () => sock.close() };
}

/** The host's own non-loopback IPv4 addresses. */
function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a!.address)
    .filter((a) => !a.startsWith('10.88.') && !a.startsWith('10.89.'))
    .slice(0, 2);
}

/**
 * The suite for one daemon configuration: as root by default the default
 * network is a bridge; with `--bridge none` it is the built-in user-mode
 * network (passt, whose gateway is not mapped to the host's loopback).
 */
function isolationSuite(title: string, daemonArgs: string[], only?: string[]): void {
  describe(title, { skip: process.getuid?.() === 0 ? false : 'the bridge default network needs root' }, () => {
    let d: TestDaemon;
    let apiPort: number;
    const listeners: Listener[] = [];
    before(async () => {
      listeners.push(await tcpListener('127.0.0.1'), await tcpListener('127.0.0.2'), await udpListener('127.0.0.1'));
      try {
        listeners.push(await tcpListener('::1'));
      } catch {
        // no IPv6 loopback on this host: nothing to leak there
      }
      apiPort = await freePort('127.0.0.1');
      d = await startDaemonWithBusybox(['-H', `tcp://127.0.0.1:${apiPort}`, '--allow-insecure-tcp', ...daemonArgs]);
      assert.equal((await d.run(['network', 'create', 'isonet'])).code, 0);
      assert.equal((await d.run(['pod', 'create', '--name', 'isopod'])).code, 0);
    });
    after(async () => {
      for (const l of listeners) l.close();
      await d?.run(['pod', 'rm', '-f', 'isopod']);
      await d?.run(['network', 'rm', 'isonet']);
      await d?.stop();
    });

    /** A shell script probing every listener (and the daemon's API) at every address a guest might use for the host. */
    function probeScript(): string {
      const targets = ['$gw', '10.0.2.2', '10.0.2.3', ...hostAddresses()].join(' ');
      const tcpPorts = [...listeners.filter((l) => l.label.startsWith('tcp')).map((l) => l.port), apiPort].join(' ');
      const udpPorts = listeners.filter((l) => l.label.startsWith('udp')).map((l) => l.port).join(' ');
      return [
        `gw=$(ip route | awk '/^default/ {print $3}')`,
        `for t in ${targets}; do [ -n "$t" ] || continue`,
        `  for p in ${tcpPorts}; do out=$(printf 'GET /_ping HTTP/1.0\\r\\n\\r\\n' | nc -w 1 $t $p 2>/dev/null); case "$out" in *LEAK*|*OK*) echo "REACHED $t:$p";; esac; done`,
        `  for p in ${udpPorts}; do timeout 2 tftp -g -r probe -l /tmp/probe $t $p >/dev/null 2>&1; done`,
        `done; echo probed`,
      ].join('\n');
    }

    const modes: Array<[string, string[]]> = [
      ['default network (clone)', []],
      ['default network (cold boot)', ['--no-clone']],
      ['default network with a published port', ['-p', '127.0.0.1::80']],
      ['user-defined bridge network', ['--network', 'isonet']],
      ['pod', ['--pod', 'isopod']],
      ['--network none', ['--network', 'none']],
    ];
    for (const [mode, args] of modes.filter(([m]) => !only || only.includes(m))) {
      it(`from ${mode}`, async () => {
        const r = await d.run(['run', '--rm', ...args, 'busybox', 'sh', '-c', probeScript()], { timeoutMs: 120_000 });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /probed/);
        assert.doesNotMatch(r.stdout, /REACHED/);
        for (const l of listeners) assert.deepEqual(l.hits, [], `${l.label}:${l.port} was reached from ${mode}`);
      });
    }

    it('control: a host service on 0.0.0.0 is reachable through host-gateway, so the probes work', async () => {
      const open = await tcpListener('0.0.0.0');
      try {
        const r = await d.run(['run', '--rm', '--add-host', 'thehost:host-gateway', 'busybox', 'sh', '-c', `echo x | timeout 10 nc -w 2 thehost ${open.port}; true`]);
        assert.match(r.stdout, /LEAK/, r.stderr);
        assert.equal(open.hits.length, 1);
      } finally {
        open.close();
      }
    });
  });
}

isolationSuite('no container reaches the host loopback (default bridge)', []);
// Bridge networks and --network none are the same as above; the built-in network is what differs.
isolationSuite('no container reaches the host loopback (--bridge none: user-mode network)', ['--bridge', 'none'], [
  'default network (clone)',
  'default network with a published port',
  'pod',
]);
