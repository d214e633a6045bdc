/** /volumes routes: named volumes of the "local" driver (engine/volumes.ts). */
import { z } from 'zod';
import type { Engine } from '../../../engine/engine.js';
import type { VolumeMeta } from '../../../engine/volumes.js';
import { labelsMatch } from '../../../engine/container-query.js';
import { parseFilters } from '../http.js';
import type { RouteTable } from '../server.js';

const createSchema = z
  .object({
    Name: z.string().nullish(),
    Driver: z.string().nullish(),
    DriverOpts: z.record(z.string(), z.string()).nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
  })
  .passthrough();

function present(v: VolumeMeta, engine: Engine, withUsage = false) {
  const { Anonymous, ...rest } = v;
  void Anonymous;
  const users = engine.volumes.users(v.Name);
  return {
    ...rest,
    ...(withUsage ? { UsageData: { Size: engine.volumes.size(v.Name), RefCount: users.length } } : {}),
  };
}

export function volumeRoutes(r: RouteTable, engine: Engine): void {
  r.add('GET', '/volumes', (ctx) => {
    const f = parseFilters(ctx);
    let list = engine.volumes.list();
    if (f.name) list = list.filter((v) => f.name!.some((n) => v.Name.includes(n)));
    if (f.dangling) {
      const want = f.dangling.includes('true') || f.dangling.includes('1');
      list = list.filter((v) => (engine.volumes.users(v.Name).length === 0) === want);
    }
    if (f.label) list = list.filter((v) => labelsMatch(f.label!, v.Labels));
    ctx.send(200, { Volumes: list.map((v) => present(v, engine)), Warnings: null });
  });

  r.add('POST', '/volumes/create', async (ctx) => {
    const body = await ctx.json(createSchema, true);
    const v = engine.volumes.create({
      name: body?.Name ?? undefined,
      driver: body?.Driver ?? undefined,
      options: body?.DriverOpts ?? undefined,
      labels: body?.Labels ?? undefined,
    });
    ctx.send(201, present(v, engine));
  });

  r.add('POST', '/volumes/prune', (ctx) => {
    const f = parseFilters(ctx);
    // As Docker >= 23: only anonymous volumes unless all=true.
    const { deleted, space } = engine.volumes.prune(!!(f.all?.includes('true') || f.all?.includes('1')));
    ctx.send(200, { VolumesDeleted: deleted, SpaceReclaimed: space });
  });

  r.add('GET', '/volumes/:name', (ctx) => ctx.send(200, present(engine.volumes.get(ctx.params.name!), engine, true)));

  r.add('DELETE', '/volumes/:name', (ctx) => {
    const name = ctx.params.name!;
    // force: no error for a missing volume; a volume in use is still refused (as dockerd).
    if (ctx.bool('force') && !engine.volumes.exists(name)) return ctx.send(204);
    engine.volumes.remove(name);
    ctx.send(204);
  });
}
