/** Registry routes: pull (POST /images/create?fromImage=), push, /auth (login), distribution inspect and search. */
import { invalid, notFound } from '../../../common/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { familiarName, parseReference } from '../../../images/reference.js';
import { decodeRegistryAuth, type Credentials } from '../../../images/registry/auth.js';
import { checkLogin } from '../../../images/registry/client.js';
import { parseFilters, type Ctx } from '../http.js';
import type { RouteTable } from '../server.js';
import type { ImagePaths } from './image-paths.js';
import { z } from 'zod';

const authBodySchema = z.object({ username: z.string().optional(), password: z.string().optional(), serveraddress: z.string().optional(), identitytoken: z.string().optional() }).passthrough();

function credentials(ctx: Ctx): Credentials | undefined {
  const h = ctx.req.headers['x-registry-auth'];
  return decodeRegistryAuth(Array.isArray(h) ? h[0] : h);
}

/** POST /images/create?fromImage=NAME&tag=TAG: Docker's pull, with its progress stream. */
export async function pullRoute(ctx: Ctx, engine: Engine, insecure: string[]): Promise<void> {
  const from = ctx.query.get('fromImage') ?? '';
  const tag = ctx.query.get('tag');
  let input = from;
  if (tag) input = tag.startsWith('sha256:') ? `${from}@${tag}` : `${from}:${tag}`;
  const ref = parseReference(input);
  const creds = credentials(ctx);
  const messages = ctx.beginJsonMessages();
  const name = familiarName(ref);
  try {
    messages.send({ status: `Pulling from ${ref.path}`, id: ref.tag ?? ref.digest });
    const r = await engine.images.pull(ref, { credentials: creds, insecure, platform: ctx.query.get('platform') || undefined, progress: (m) => messages.send(m) });
    messages.send({ status: `Digest: ${r.repoDigest}` });
    messages.send({ status: r.downloaded ? `Status: Downloaded newer image for ${name}` : `Status: Image is up to date for ${name}` });
  } catch (err) {
    messages.fail(err);
  } finally {
    messages.end();
  }
}

export function distributionRoutes(r: RouteTable, images: ImagePaths, engine: Engine, insecure: string[]): void {
  images.add('POST', '/push', async (ctx, name) => {
    const tag = ctx.query.get('tag');
    const refText = tag ? `${name}:${tag}` : name;
    const ref = parseReference(refText);
    engine.images.resolve(familiarName(ref));
    const messages = ctx.beginJsonMessages();
    try {
      const res = await engine.images.push(ref, { credentials: credentials(ctx), insecure, progress: (m) => messages.send(m) });
      const t = ref.tag ?? 'latest';
      messages.send({ status: `${t}: digest: ${res.digest} size: ${res.size}` });
      messages.send({ progressDetail: {}, aux: { Tag: t, Digest: res.digest, Size: res.size } });
    } catch (err) {
      messages.fail(err);
    } finally {
      messages.end();
    }
  });

  // GET /distribution/{name}/json: the name has slashes, so the route is a wildcard.
  r.add('GET', '/distribution/*', async (ctx) => {
    const wild = ctx.params['*'] ?? '';
    if (!wild.endsWith('/json') || wild.length <= 5) throw notFound('page not found');
    const ref = parseReference(wild.slice(0, -5));
    ctx.send(200, await engine.images.distributionInspect(ref, { credentials: credentials(ctx), insecure }));
  });

  r.add('GET', '/images/search', async (ctx) => {
    const term = ctx.query.get('term') ?? '';
    if (!term) throw invalid('term is required');
    const limit = ctx.int('limit') ?? 25;
    if (limit < 1 || limit > 100) throw invalid(`limit ${limit} is outside the range of [1, 100]`);
    ctx.send(200, await engine.images.search(term, limit, parseFilters(ctx), { credentials: credentials(ctx), insecure }));
  });

  r.add('POST', '/auth', async (ctx) => {
    const body = await ctx.json(authBodySchema);
    if (!body.username) throw invalid('username is required');
    const address = (body.serveraddress || 'docker.io').replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    await checkLogin(address === 'index.docker.io' ? 'docker.io' : address, { credentials: body, insecure });
    ctx.send(200, { Status: 'Login Succeeded', IdentityToken: '' });
  });
}
