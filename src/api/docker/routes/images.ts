/** /images/... routes (local images; registry pull/push arrive with the images issue). */
import { invalid } from '../../../common/errors.js';
import { pullRoute } from './distribution.js';
import type { Engine } from '../../../engine/engine.js';
import type { Image } from '../../../images/store.js';
import { parseFilters } from '../http.js';
import type { RouteTable } from '../server.js';
import type { ImagePaths } from './image-paths.js';

export function imageSummary(img: Image) {
  return {
    Id: img.id,
    ParentId: '',
    RepoTags: img.refs,
    RepoDigests: img.repoDigests,
    Created: Math.floor(Date.parse(img.config.created ?? '1970-01-01T00:00:00Z') / 1000),
    Size: img.size,
    SharedSize: -1,
    VirtualSize: img.size,
    Labels: img.config.config.Labels ?? {},
    Containers: -1,
  };
}

/** Docker's history: newest step first, each step that made a layer with that layer's size. */
function imageHistory(img: Image) {
  const history = (img.config.history ?? []) as Array<{ created?: string; created_by?: string; comment?: string; empty_layer?: boolean }>;
  const steps = history.length ? history : img.manifest.layers.map(() => ({}) as (typeof history)[number]);
  let layer = 0;
  const rows = steps.map((h, i) => {
    const size = h.empty_layer ? 0 : (img.manifest.layers[layer++]?.size ?? 0);
    return {
      Id: i === steps.length - 1 ? img.id : '<missing>',
      Created: Math.floor(Date.parse(h.created ?? img.config.created ?? '1970-01-01T00:00:00Z') / 1000),
      CreatedBy: h.created_by ?? '',
      Tags: i === steps.length - 1 ? img.refs : null,
      Size: size,
      Comment: h.comment ?? '',
    };
  });
  return rows.reverse();
}

function imageInspect(img: Image) {
  return {
    Id: img.id,
    RepoTags: img.refs,
    RepoDigests: img.repoDigests,
    Parent: '',
    // As dockerd: the comment of the image's last step (commit -m, import -m).
    Comment: img.config.history?.at(-1)?.comment ?? '',
    Created: img.config.created ?? '',
    Author: img.config.author ?? '',
    Config: img.config.config,
    Architecture: img.config.architecture,
    Os: img.config.os,
    Size: img.size,
    RootFS: { Type: 'layers', Layers: img.config.rootfs.diff_ids },
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
    Descriptor: { mediaType: img.manifest.mediaType, digest: img.manifestDigest },
  };
}

export function imageRoutes(r: RouteTable, images: ImagePaths, engine: Engine, insecure: string[]): void {
  // A build's step images are listed only with `all` (`images -a`), as Docker's intermediate images.
  r.add('GET', '/images/json', (ctx) => ctx.send(200, engine.images.list().filter((i) => !i.intermediate || ctx.bool('all')).map(imageSummary)));

  r.add('POST', '/images/create', async (ctx) => {
    const fromSrc = ctx.query.get('fromSrc');
    if (fromSrc === '-') {
      const repo = ctx.query.get('repo');
      const tag = ctx.query.get('tag');
      const ref = repo ? `${repo}${tag ? `:${tag}` : ''}` : undefined;
      const id = await engine.images.import(ctx.req, { ref, changes: ctx.query.getAll('changes'), message: ctx.query.get('message') ?? undefined });
      return ctx.send(200, { status: id });
    }
    if (!ctx.query.get('fromImage')) throw invalid('fromImage or fromSrc is required');
    return pullRoute(ctx, engine, insecure);
  });

  images.add('GET', '/json', (ctx, name) => ctx.send(200, imageInspect(engine.images.resolve(name))));

  images.add('POST', '/tag', (ctx, name) => {
    engine.images.resolve(name);
    const repo = ctx.query.get('repo');
    if (!repo) return ctx.send(400, { message: 'repository name must have at least one component' });
    engine.images.tag(name, repo, ctx.query.get('tag') || 'latest');
    ctx.send(201);
  });

  images.add('DELETE', '', (ctx, name) => ctx.send(200, engine.images.remove(name, ctx.bool('force'))));

  r.add('POST', '/images/prune', (ctx) => {
    const filters = parseFilters(ctx);
    const dangling = filters.dangling?.[0];
    ctx.send(200, engine.images.prune(dangling === 'false' || dangling === '0'));
  });

  images.add('GET', '/history', (ctx, name) => ctx.send(200, imageHistory(engine.images.resolve(name))));

}
