/**
 * hyperbox's own API, next to the Docker one on the same socket, under
 * /hyperbox/...: what Docker has no words for (templates, and later pods).
 */
import { z } from 'zod';
import { notFound } from '../../common/errors.js';
import type { Engine } from '../../engine/engine.js';
import type { RouteTable } from '../docker/server.js';

const createTemplateSchema = z.object({
  MemoryMiB: z.number().int().min(64).max(1 << 20).optional(),
  Cpus: z.number().int().min(1).max(64).optional(),
});

export function nativeRoutes(r: RouteTable, engine: Engine): void {
  r.add('GET', '/hyperbox/templates', (ctx) => ctx.send(200, engine.templates.list()));

  r.add('POST', '/hyperbox/templates', async (ctx) => {
    const b = await ctx.json(createTemplateSchema, true);
    const t = await engine.templates.ensure(engine.guestShape(b.MemoryMiB, b.Cpus));
    ctx.send(201, { Key: t.key, Created: t.created, BootMs: t.bootMs });
  });

  r.add('DELETE', '/hyperbox/templates/:key', (ctx) => {
    if (!engine.templates.remove(ctx.params.key!)) throw notFound(`No such template: ${ctx.params.key}`);
    ctx.send(204);
  });
}
