/** Image archives: save (/images/get, /images/{name}/get) and load (/images/load). */
import { pipeline } from 'node:stream/promises';
import type { Engine } from '../../../engine/engine.js';
import type { Ctx } from '../http.js';
import type { RouteTable } from '../server.js';
import type { ImagePaths } from './image-paths.js';

async function sendArchive(ctx: Ctx, engine: Engine, names: string[]): Promise<void> {
  const archive = engine.images.save(names);
  const out = ctx.beginStream('application/x-tar');
  await pipeline(archive, out).catch((err: Error) => out.destroy(err));
}

export function archiveRoutes(r: RouteTable, images: ImagePaths, engine: Engine): void {
  r.add('GET', '/images/get', (ctx) => sendArchive(ctx, engine, ctx.query.getAll('names')));
  images.add('GET', '/get', (ctx, name) => sendArchive(ctx, engine, [name]));

  r.add('POST', '/images/load', async (ctx) => {
    const messages = ctx.beginJsonMessages();
    try {
      await engine.images.load(ctx.req, (line) => messages.send({ stream: `${line}\n` }));
    } catch (err) {
      messages.fail(err);
    } finally {
      messages.end();
    }
  });
}
