/** /images/... routes (local images; registry pull/push arrive with the images issue). */
import { invalid } from '../../../common/errors.js';
import { pullRoute } from './distribution.js';
import { pruneImages, removeImage } from '../../../engine/image-ops.js';
import type { Engine } from '../../../engine/engine.js';
import { importRootfs } from '../../../images/import.js';
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
    Comment: '',
    Created: img.config.created ?? '',
    Author: img.config.author ?? '',
    Config: img.config.config,
    Architecture: img.config.architecture,
    Os: img.config.os,
    Size: img.size,
    RootFS: { Type: 'layers', Layers: img.config.rootfs.diff_ids },
    Metadata: { LastTagTime: '' },
    Descriptor: { mediaType: img.manifest.mediaType, digest: img.manifestDigest },
  };
}

export function imageRoutes(r: RouteTable, images: ImagePaths, engine: Engine, insecure: string[]): void {
  r.add('GET', '/images/json', (ctx) => ctx.send(200, engine.store.list().map(imageSummary)));

  r.add('POST', '/images/create', async (ctx) => {
    const fromSrc = ctx.query.get('fromSrc');
    if (fromSrc === '-') {
      const repo = ctx.query.get('repo');
      const tag = ctx.query.get('tag');
      const ref = repo ? `${repo}${tag ? `:${tag}` : ''}` : undefined;
      const id = await importRootfs(engine.store, ctx.req, { ref, changes: ctx.query.getAll('changes'), message: ctx.query.get('message') ?? undefined });
      engine.events.publish('image', 'import', id, { name: ref ?? id });
      return ctx.send(200, { status: id });
    }
    if (!ctx.query.get('fromImage')) throw invalid('fromImage or fromSrc is required');
    return pullRoute(ctx, engine, insecure);
  });

  images.add('GET', '/json', (ctx, name) => ctx.send(200, imageInspect(engine.store.resolve(name))));

  images.add('POST', '/tag', (ctx, name) => {
    const img = engine.store.resolve(name);
    const repo = ctx.query.get('repo');
    if (!repo) return ctx.send(400, { message: 'repository name must have at least one component' });
    const tag = ctx.query.get('tag') || 'latest';
    engine.store.tag(`${repo}:${tag}`, img.manifestDigest);
    engine.events.publish('image', 'tag', img.id, { name: `${repo}:${tag}` });
    ctx.send(201);
  });

  images.add('DELETE', '', (ctx, name) => ctx.send(200, removeImage(engine, name, ctx.bool('force'))));

  r.add('POST', '/images/prune', (ctx) => {
    const filters = parseFilters(ctx);
    const dangling = filters.dangling?.[0];
    ctx.send(200, pruneImages(engine, dangling === 'false' || dangling === '0'));
  });

  images.add('GET', '/history', (ctx, name) => ctx.send(200, imageHistory(engine.store.resolve(name))));

}
