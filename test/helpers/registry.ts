/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on a
 * loopback port, anonymous, with htpasswd Basic auth, or with Bearer tokens from
 * a small token server run here (RS256 JWTs signed by a throwaway openssl key).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';
import { waitFor } from './wait.js';

export type RegistryAuth = { kind: 'none' } | { kind: 'basic' | 'token'; user: string; password: string };

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export class TestRegistry {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-registry-'));
  port = 0;
  private proc: ChildProcess | undefined;
  private tokenServer: http.Server | undefined;

  constructor(readonly auth: RegistryAuth = { kind: 'none' }) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  get logFile(): string {
    return path.join(this.dir, 'registry.log');
  }

  async start(): Promise<void> {
    this.port = await freePort('127.0.0.1');
    let authCfg = '';
    if (this.auth.kind === 'basic') {
      const htpasswd = execFileSync('htpasswd', ['-Bbn', this.auth.user, this.auth.password], { encoding: 'utf8' });
      fs.writeFileSync(path.join(this.dir, 'htpasswd'), htpasswd);
      authCfg = `auth:\n  htpasswd:\n    realm: test\n    path: ${path.join(this.dir, 'htpasswd')}\n`;
    } else if (this.auth.kind === 'token') {
      const key = path.join(this.dir, 'key.pem');
      const cert = path.join(this.dir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=hyperbox-test-token'], { stdio: 'ignore' });
      const tokenPort = await freePort('127.0.0.1');
      this.tokenServer = this.startTokenServer(tokenPort, fs.readFileSync(key, 'utf8'), fs.readFileSync(cert, 'utf8'));
      authCfg = `auth:\n  token:\n    realm: http://127.0.0.1:${tokenPort}/token\n    service: hyperbox-test\n    issuer: hyperbox-test-issuer\n    rootcertbundle: ${cert}\n`;
    }
    const config = `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(this.dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${this.port}\n${authCfg}`;
    fs.writeFileSync(path.join(this.dir, 'config.yml'), config);
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn('docker-registry', ['serve', path.join(this.dir, 'config.yml')], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    await waitFor(() => fetch(`http://${this.host}/v2/`).then((r) => r.status === 200 || r.status === 401), { what: 'the registry to answer', timeoutMs: 15_000 }).catch((err: Error) => {
      throw new Error(`${err.message}: ${fs.readFileSync(this.logFile, 'utf8')}`);
    });
  }

  /** Number of blob downloads the registry served for REPO so far. */
  blobGets(repo: string): number {
    const log = fs.readFileSync(this.logFile, 'utf8');
    return log.split('\n').filter((l) => l.includes(`"GET /v2/${repo}/blobs/sha256:`) && / 200 /.test(l)).length;
  }

  private startTokenServer(port: number, key: string, certPem: string): http.Server {
    const auth = this.auth as { user: string; password: string };
    const der = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const basic = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString() : '';
      if (basic !== `${auth.user}:${auth.password}`) {
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"incorrect username or password"}');
        return;
      }
      const access = url.searchParams.getAll('scope').map((s) => {
        const [type, ...rest] = s.split(':');
        const actions = rest.pop()!.split(',');
        return { type, name: rest.join(':'), actions };
      });
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] }));
      const claims = b64url(JSON.stringify({ iss: 'hyperbox-test-issuer', sub: auth.user, aud: url.searchParams.get('service'), exp: now + 600, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }));
      const signature = createSign('RSA-SHA256').update(`${header}.${claims}`).sign(key);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${b64url(signature)}` }));
    });
    server.listen(port, '127.0.0.1');
    return server;
  }

  async stop(): Promise<void> {
    this.proc?.kill();
    this.tokenServer?.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
