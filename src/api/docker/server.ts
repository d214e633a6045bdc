/**
 * The Docker Engine API server (the `docker` CLI, dockerode and `hyperbox` all
 * speak it). Every route answers both unversioned and as /v{X.Y}/..., within
 * [MIN_API_VERSION, API_VERSION], with dockerd's headers and error format.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import FindMyWay from 'find-my-way';
import { invalid, notFound } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { Engine } from '../../engine/engine.js';
import { API_VERSION, compareVersions, Ctx, MIN_API_VERSION } from './http.js';
import { containerRoutes } from './routes/containers.js';
import { execRoutes } from './routes/exec.js';
import { archiveRoutes } from './routes/archive.js';
import { buildRoutes } from './routes/build.js';
import { distributionRoutes } from './routes/distribution.js';
import { ImagePaths } from './routes/image-paths.js';
import { imageRoutes } from './routes/images.js';
import { systemRoutes } from './routes/system.js';
import { networkRoutes } from './routes/networks.js';
import { volumeRoutes } from './routes/volumes.js';
import { nativeRoutes } from '../native/routes.js';

export type Handler = (ctx: Ctx) => Promise<void> | void;
export type Method = 'GET' | 'POST' | 'DELETE' | 'HEAD' | 'PUT';
export interface RouteTable {
  add(method: Method | Method[], path: string, handler: Handler): void;
}

export interface ServerInfo {
  version: string;
  accel: string;
  accelReason: string;
  dataRoot: string;
  qemuVersion: string;
  defaultMemoryMiB: number;
  liveRestore: boolean;
  /** Registries allowed over plain HTTP besides loopback ones. */
  insecureRegistries: string[];
}

/** TLS for a TCP listener: the server's certificate, and a CA to verify clients against (`--tlsverify`). */
export interface TlsFiles {
  cert: string;
  key: string;
  ca?: string;
}

/**
 * The API as an HTTP server. Called once per listener (unix socket, TCP, TLS):
 * routes are only registrations, the state they reach is the engine's.
 */
export function createDockerApiServer(engine: Engine, info: ServerInfo, logger: Logger, tls?: TlsFiles): http.Server {
  const router = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 500 });
  const table: RouteTable = {
    add(method, p, handler) {
      router.on(method, p, (() => undefined) as never, { handler });
    },
  };
  systemRoutes(table, engine, info);
  containerRoutes(table, engine);
  execRoutes(table, engine);
  volumeRoutes(table, engine);
  networkRoutes(table, engine);
  const imagePaths = new ImagePaths(table);
  imageRoutes(table, imagePaths, engine, info.insecureRegistries);
  distributionRoutes(table, imagePaths, engine, info.insecureRegistries);
  archiveRoutes(table, imagePaths, engine);
  buildRoutes(table, engine, info.insecureRegistries);
  nativeRoutes(table, engine);

  const commonHeaders = {
    'Api-Version': API_VERSION,
    Server: `hyperbox/${info.version} (linux)`,
    Ostype: 'linux',
    'Docker-Experimental': 'false',
  };

  async function dispatch(req: http.IncomingMessage, res: http.ServerResponse | undefined, socket?: Duplex, head?: Buffer) {
    // A copy per request: a route may add headers (/_ping does) for its answer only.
    const ctx = new Ctx(req, res, socket, head, { ...commonHeaders });
    logger.debug(`${req.method} ${req.url}${socket ? ' (upgrade)' : ''}`);
    try {
      let p = ctx.path;
      const m = /^\/v([0-9]+\.[0-9]+)(\/.*)$/.exec(p);
      if (m) {
        const [, version, rest] = m as unknown as [string, string, string];
        if (compareVersions(version, MIN_API_VERSION) < 0) {
          throw invalid(`client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
        }
        if (compareVersions(version, API_VERSION) > 0) throw invalid(`client version ${version} is too new. Maximum supported API version is ${API_VERSION}`);
        ctx.apiVersion = version;
        p = rest;
      }
      const found = router.find(req.method as Method, p);
      if (!found) throw notFound('page not found');
      ctx.params = found.params;
      await (found.store as { handler: Handler }).handler(ctx);
    } catch (err) {
      if (!(err instanceof Error && 'kind' in err)) logger.error(`${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      else logger.debug(`${req.method} ${req.url}: ${(err as Error).message}`);
      // A refused upload (cp in, load, build): read what the client still sends, so it
      // gets the error rather than a broken pipe.
      if (!req.complete && !req.destroyed) req.resume();
      ctx.sendError(err);
    }
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => void dispatch(req, res);
  const server = tls
    ? https.createServer(
        {
          cert: fs.readFileSync(tls.cert),
          key: fs.readFileSync(tls.key),
          // With a CA, only clients holding a certificate it signed get in (dockerd's --tlsverify).
          ...(tls.ca ? { ca: fs.readFileSync(tls.ca), requestCert: true, rejectUnauthorized: true } : {}),
        },
        onRequest,
      )
    : http.createServer(onRequest);
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    void dispatch(req, undefined, socket, head);
  });
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  return server;
}

/** Listens on a unix socket, refusing to steal one a live daemon is using. */
/** Throws if a daemon answers on SOCKETPATH (a stale socket file is no one's). */
export async function checkSocketFree(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const req = http.request({ socketPath, path: '/_ping', method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => (req.destroy(), resolve(false)));
    req.end();
  });
  if (alive) throw new Error(`another daemon is already listening on ${socketPath}`);
}

export async function listenUnix(server: http.Server, socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true });
  await checkSocketFree(socketPath);
  fs.rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o660);
}

/** Listens on TCP (`-H tcp://host:port`). */
export async function listenTcp(server: http.Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
}
