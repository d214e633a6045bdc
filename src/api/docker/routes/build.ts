/**
 * POST /build (Docker's classic builder API, what `DOCKER_BUILDKIT=0 docker
 * build`, dockerode's buildImage and docker-compose send): the context tar is
 * the body, the options are query parameters, the answer is the JSON message
 * stream the docker CLI prints. POST /build/prune clears the build cache.
 */
import path from 'node:path';
import { invalid, notImplemented } from '../../../common/errors.js';
import { Builder, type BuildOptions } from '../../../build/builder.js';
import { parseRegistryConfig } from '../../../build/options.js';
import type { Engine } from '../../../engine/engine.js';
import type { Ctx } from '../http.js';
import type { RouteTable } from '../server.js';

/** A JSON-object query parameter (buildargs, labels): "" or absent is empty. */
function jsonParam<T>(ctx: Ctx, name: string, check: (v: unknown) => v is T, dflt: T): T {
  const raw = ctx.query.get(name);
  if (!raw) return dflt;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw invalid(`invalid ${name}: not JSON: ${raw}`);
  }
  if (v === null) return dflt;
  if (!check(v)) throw invalid(`invalid ${name}: expected a JSON object of strings`);
  return v;
}

const isStringMap = <N extends boolean>(nullable: N) =>
  ((v: unknown) => !!v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string' || (nullable && x === null))) as (
    v: unknown,
  ) => v is Record<string, N extends true ? string | null : string>;

/** The build options of the query string, as the docker CLI and docker-py send them. */
export function buildOptionsOf(ctx: Ctx, insecure: string[]): BuildOptions {
  if (ctx.query.get('remote')) throw notImplemented('building from a remote context (URL or git repository) is not supported by hyperbox: send the context as a tar');
  if (ctx.query.get('version') === '2') throw notImplemented('BuildKit (builder version 2) is not supported by hyperbox: use the classic builder (DOCKER_BUILDKIT=0)');
  if (ctx.query.get('session')) throw notImplemented('build sessions (BuildKit) are not supported by hyperbox');
  return {
    dockerfile: ctx.query.get('dockerfile') || 'Dockerfile',
    tags: ctx.query.getAll('t').filter((t) => t),
    target: ctx.query.get('target') || undefined,
    noCache: ctx.bool('nocache'),
    pull: ctx.bool('pull'),
    buildArgs: jsonParam(ctx, 'buildargs', isStringMap(true), {}),
    labels: jsonParam(ctx, 'labels', isStringMap(false), {}),
    platform: ctx.query.get('platform') || undefined,
    insecure,
    credentials: parseRegistryConfig(ctx.req.headers['x-registry-config'] as string | undefined),
  };
}

/** One builder per engine, shared by its listeners (unix socket, TCP). */
const builders = new WeakMap<Engine, Builder>();

export function buildRoutes(r: RouteTable, engine: Engine, insecure: string[]): void {
  const builder = builders.get(engine) ?? new Builder(engine, path.join(engine.opts.dataRoot, 'build'));
  if (!builders.has(engine)) {
    builder.sweep(); // the first listener's routes: nothing is building yet
    builders.set(engine, builder);
  }

  r.add('POST', '/build', async (ctx) => {
    const abort = new AbortController();
    const opts = { ...buildOptionsOf(ctx, insecure), signal: abort.signal };
    const quiet = ctx.bool('q');
    // As dockerd: the response starts once the context is read. Answering before the
    // client finished sending it makes Go's HTTP client stop sending (`docker build -`).
    let messages: ReturnType<Ctx['beginJsonMessages']> | undefined;
    const send = (m: Record<string, unknown>) => (messages ??= ctx.beginJsonMessages()).send(m);
    ctx.res?.once('close', () => ctx.res?.writableFinished || abort.abort());
    try {
      const id = await builder.build(ctx.req, opts, {
        ready: () => void (messages ??= ctx.beginJsonMessages()),
        stream: (text) => quiet || send({ stream: text }),
        aux: (value) => send({ aux: value }),
        status: (m) => quiet || send(m),
      });
      if (quiet) send({ stream: `${id}\n` });
    } catch (err) {
      ctx.req.resume(); // a context not read to its end is drained, not left pending
      if (!messages) throw err; // nothing answered yet: a plain error response
      messages.fail(err);
    } finally {
      messages?.end();
    }
  });

  const prune = (ctx: Ctx) => ctx.send(200, builder.prune());
  r.add('POST', '/build/prune', prune);
}
