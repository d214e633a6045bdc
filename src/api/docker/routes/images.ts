/** /images/... routes (local images; registry pull/push arrive with the images issue). */
import { conflict, notImplemented } from '../../../common/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { importRootfs } from '../../../images/import.js';
import type { Image } from '../../../images/store.js';
import type { RouteTable } from '../server.js';
import type { ImagePaths } from './image-paths.js';

function imageSummary(img: Image) {
  return {
    Id: img.id,
    ParentId: '',
    RepoTags: img.refs,
    RepoDigests: [],
    Created: Math.floor(Date.parse(img.config.created ?? '1970-01-01T00:00:00Z') / 1000),
    Size: img.size,
    SharedSize: -1,
    VirtualSize: img.size,
    Labels: img.config.config.Labels ?? {},
    Containers: -1,
  };
}

function imageInspect(img: Image) {
  return {
    Id: img.id,
    RepoTags: img.refs,
    RepoDigests: [],
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

export function imageRoutes(r: RouteTable, images: ImagePaths, engine: Engine): void {
  r.add('GET', '/images/json', (ctx) => ctx.send(200, engine.store.list().map(imageSummary)));

  r.add('POST', '/images/create', async (ctx) => {
    const fromSrc = ctx.query.get('fromSrc');
    if (fromSrc === '-') {
      const repo = ctx.query.get('repo');
      const tag = ctx.query.get('tag');
      const ref = repo ? `${repo}${tag ? `:${tag}` : ''}` : undefined;
      const id = await importRootfs(engine.store, ctx.req, { ref, changes: ctx.query.getAll('changes'), message: ctx.query.get('message') ?? undefined });
      engine.emitEvent('image', 'import', id, { name: ref ?? id });
      return ctx.send(200, { status: id });
    }
    throw notImplemented(`pulling images from a registry is not implemented yet in hyperbox (image "${ctx.query.get('fromImage')}")`);
  });

  images.add('GET', '/json', (ctx, name) => ctx.send(200, imageInspect(engine.store.resolve(name))));

  images.add('POST', '/tag', (ctx, name) => {
    const img = engine.store.resolve(name);
    const repo = ctx.query.get('repo');
    if (!repo) return ctx.send(400, { message: 'repository name must have at least one component' });
    const tag = ctx.query.get('tag') || 'latest';
    engine.store.tag(`${repo}:${tag}`, img.manifestDigest);
    engine.emitEvent('image', 'tag', img.id, { name: `${repo}:${tag}` });
    ctx.send(201);
  });

  images.add('DELETE', '', (ctx, name) => {
    const img = engine.store.resolve(name);
    const force = ctx.bool('force');
    const user = engine.imageInUse(img.id);
    const byId = img.id.slice(7).startsWith(name.replace(/^sha256:/, ''));
    if (user && !force && (byId || img.refs.length <= 1)) {
      throw conflict(`conflict: unable to delete ${byId ? img.id.slice(7, 19) : name} (must be forced) - image is being used by container ${user.id.slice(0, 12)}`);
    }
    const out: Array<Record<string, string>> = [];
    const refs = byId ? img.refs : [name];
    for (const ref of refs) {
      if (engine.store.untag(ref)) out.push({ Untagged: ref });
    }
    const remaining = engine.store.list().some((i) => i.id === img.id);
    if (!remaining && !user) {
      engine.rootfs.removeImageRootfs(img.id);
      out.push({ Deleted: img.id });
    }
    engine.emitEvent('image', 'delete', img.id, { name });
    ctx.send(200, out);
  });
}
