/**
 * The Docker API over TCP with TLS (issue 4, dockerd's --tlsverify): the docker CLI
 * with client certificates drives a real VM; without one it is turned away.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestDaemon, until, type RunResult } from './helpers/daemon.js';
import { freePort } from './helpers/net.js';
import { makeCerts } from './helpers/certs.js';

describe('Docker API over TCP with TLS', () => {
  let d: TestDaemon;
  let dir: string;
  let port: number;
  const dockerTls = (args: string[], input?: string): Promise<RunResult> =>
    new Promise((resolve) => {
      const child = spawn('docker', args, {
        env: { ...process.env, DOCKER_HOST: `tcp://127.0.0.1:${port}`, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: path.join(dir, 'client'), DOCKER_CONFIG: path.join(dir, 'docker-config') },
        stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (c) => (stdout += c));
      child.stderr!.on('data', (c) => (stderr += c));
      if (input !== undefined) child.stdin!.end(input);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-tls-'));
    makeCerts(dir);
    port = await freePort('127.0.0.1');
    d = new TestDaemon(['-H', `tcp://127.0.0.1:${port}`, '--tlsverify', '--tlscacert', path.join(dir, 'ca.pem'), '--tlscert', path.join(dir, 'server-cert.pem'), '--tlskey', path.join(dir, 'server-key.pem')]);
    await d.start();
    await d.importBusybox();
    await until('the TLS listener', () => d.log.includes(`tcp://127.0.0.1:${port} (TLS, client certificates verified)`), 10_000);
  });
  after(async () => {
    await d?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves the docker CLI holding a client certificate: version, run with attach, stdin, exit code', async () => {
    const v = await dockerTls(['version', '--format', '{{.Server.Os}}']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), 'linux');
    const r = await dockerTls(['run', '--rm', 'busybox', 'sh', '-c', 'echo over-tls; echo err >&2; exit 3']);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'over-tls\n');
    assert.equal(r.stderr, 'err\n');
    const cat = await dockerTls(['run', '--rm', '-i', 'busybox', 'tr', 'a-z', 'A-Z'], 'piped through a vm\n');
    assert.equal(cat.stdout, 'PIPED THROUGH A VM\n', cat.stderr);
  });

  it('the hyperbox CLI connects with -H tcp:// and its client certificate', async () => {
    const env = { HYPERBOX_HOST: `tcp://127.0.0.1:${port}`, HYPERBOX_CERT_PATH: path.join(dir, 'client'), HYPERBOX_TLS_VERIFY: '1' };
    const r = await d.run(['run', '--rm', 'busybox', 'sh', '-c', 'echo cli-over-tls; exit 4'], { env });
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stdout, 'cli-over-tls\n');
    assert.match((await d.run(['ps', '-a'], { env })).stdout, /CONTAINER ID/);
    // Without a client certificate the daemon refuses the TLS handshake.
    const refused = await d.run(['--tlscacert', path.join(dir, 'ca.pem'), 'ps'], { env: { HYPERBOX_HOST: `tcp://127.0.0.1:${port}` }, timeoutMs: 20_000 });
    assert.equal(refused.code, 125);
    assert.doesNotMatch(refused.stdout, /CONTAINER ID/);
    assert.notEqual(refused.stderr, '');
  });

  it('turns away clients without a certificate the CA signed', () => {
    const url = `https://127.0.0.1:${port}/_ping`;
    const withCert = spawnSync('curl', ['-sS', '--cacert', path.join(dir, 'ca.pem'), '--cert', path.join(dir, 'client-cert.pem'), '--key', path.join(dir, 'client-key.pem'), url], { encoding: 'utf8' });
    assert.equal(withCert.stdout, 'OK');
    const without = spawnSync('curl', ['-sS', '--cacert', path.join(dir, 'ca.pem'), url], { encoding: 'utf8' });
    assert.notEqual(without.status, 0);
    assert.notEqual(without.stdout, 'OK');
    const plain = spawnSync('curl', ['-sS', `http://127.0.0.1:${port}/_ping`], { encoding: 'utf8' });
    assert.notEqual(plain.stdout, 'OK', 'no plain HTTP on the TLS port');
  });

  it('refuses plain TCP on every address, loopback included, unless --allow-insecure-tcp', async () => {
    const daemonMain = path.join(path.dirname(new URL(import.meta.url).pathname), '../src/daemon/main.js');
    for (const host of ['tcp://0.0.0.0:2375', 'tcp://127.0.0.1:2375']) {
      const r = spawnSync(process.execPath, [daemonMain, '-H', host, '--data-root', path.join(dir, 'refused')], { encoding: 'utf8', timeout: 60_000 });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /refusing to serve the API on tcp:\/\/[0-9.]+:2375 without TLS/);
    }
    const plainPort = await freePort();
    const insecure = new TestDaemon(['-H', `tcp://127.0.0.1:${plainPort}`, '--allow-insecure-tcp']);
    try {
      await insecure.start();
      assert.match(insecure.log, /WITHOUT TLS on tcp:\/\/127\.0\.0\.1/);
      const ping = spawnSync('curl', ['-sS', `http://127.0.0.1:${plainPort}/_ping`], { encoding: 'utf8' });
      assert.equal(ping.stdout, 'OK');
    } finally {
      await insecure.stop();
    }
  });
});
