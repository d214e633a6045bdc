/** Image archives: save (/images/get, /images/{name}/get) and load (/images/load). */
import os from 'node:os';
import { pipeline } from 'node:stream/promises';
import type { Engine } from '../../../engine/engine.js';
import { loadImages } from '../../../images/archive/load.js';
import { saveImages, type SaveRequest } from '../../../images/archive/save.js';
import { familiarName, parseReference } from '../../../images/reference.js';
import type { Ctx } from '../http.js';
import type { RouteTable } from '../server.js';
import type { ImagePaths } from './image-paths.js';

/** Groups the requested names by image; names that are references become its tags. */
function saveRequests(engine: Engine, names: string[]): SaveRequest[] {
  const byId = new Map<string, SaveRequest>();
  for (const name of names) {
    const image = engine.store.resolve(name);
    const req = byId.get(image.id) ?? { image, tags: [] };
    byId.set(image.id, req);
    const isId = image.id.slice(7).startsWith(name.replace(/^sha256:/, ''));
    if (!isId) {
      const ref = familiarName(parseReference(name));
      if (!req.tags.includes(ref)) req.tags.push(ref);
    }
  }
  return [...byId.values()];
}

async function sendArchive(ctx: Ctx, engine: Engine, names: string[]): Promise<void> {
  const requests = saveRequests(engine, names);
  const out = ctx.beginStream('application/x-tar');
  for (const r of requests) engine.events.publish('image', 'save', r.image.id, { name: r.tags[0] ?? r.image.id });
  await pipeline(saveImages(engine.store, requests, os.tmpdir()), out).catch((err: Error) => out.destroy(err));
}

export function archiveRoutes(r: RouteTable, images: ImagePaths, engine: Engine): void {
  r.add('GET', '/images/get', (ctx) => sendArchive(ctx, engine, ctx.query.getAll('names')));
  images.add('GET', '/get', (ctx, name) => sendArchive(ctx, engine, [name]));

  r.add('POST', '/images/load', async (ctx) => {
    const messages = ctx.beginJsonMessages();
    try {
      const loaded = await loadImages(engine.store, ctx.req, (line) => messages.send({ stream: `${line}\n` }));
      for (const l of loaded) engine.events.publish('image', 'load', l.id, { name: l.tags[0] ?? l.id });
    } catch (err) {
      messages.fail(err);
      engine.store.gc();
    } finally {
      messages.end();
    }
  });
}
