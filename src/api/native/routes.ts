/**
 * hyperbox's own API, next to the Docker one on the same socket, under
 * /hyperbox/...: what Docker has no words for (templates and pods).
 */
import { z } from 'zod';
import { invalid, notFound } from '../../common/errors.js';
import type { Engine } from '../../engine/engine.js';
import type { Pod } from '../../engine/pods.js';
import type { RouteTable } from '../docker/server.js';
import { migrateRoutes } from './migrate-routes.js';

const createTemplateSchema = z.object({
  MemoryMiB: z.number().int().min(64).max(1 << 20).optional(),
  Cpus: z.number().int().min(1).max(64).optional(),
});

const portBindingsSchema = z.record(z.string(), z.array(z.object({ HostIp: z.string().nullish(), HostPort: z.string().nullish() })).nullish());

const createPodSchema = z
  .object({
    Name: z.string().max(128).optional(),
    Hostname: z.string().max(63).optional(),
    PortBindings: portBindingsSchema.optional(),
    Labels: z.record(z.string(), z.string()).optional(),
    NetworkMode: z.string().max(128).optional(),
  })
  .strict();

/** What `pod inspect` and `pod ps` show: the record plus its containers and VM. */
function presentPod(engine: Engine, pod: Pod) {
  const vm = pod.sandbox;
  return {
    ...pod.record,
    Ports: pod.record.State.Status === 'running' ? (pod.record.Ports ?? {}) : {},
    VmPid: vm && !vm.exited ? vm.pid : 0,
    StartInfo: pod.sandbox?.info,
    Containers: engine.pods.members(pod).map((c) => ({ Id: c.id, Name: c.name, State: c.record.State.Status, ExitCode: c.record.State.ExitCode })),
  };
}

export function nativeRoutes(r: RouteTable, engine: Engine): void {
  migrateRoutes(r, engine);
  r.add('GET', '/hyperbox/templates', (ctx) => ctx.send(200, engine.driver.templates.list()));

  r.add('POST', '/hyperbox/templates', async (ctx) => {
    const b = await ctx.json(createTemplateSchema, true);
    // Every template a container of that shape may clone from (two under the block driver).
    const made = [];
    for (const shape of await engine.templateShapes(b.MemoryMiB, b.Cpus)) made.push(await engine.driver.templates.ensure(shape));
    ctx.send(201, { Key: made[0]!.key, Created: made[0]!.created, BootMs: made[0]!.bootMs, Keys: made.map((t) => t.key) });
  });

  r.add('DELETE', '/hyperbox/templates/:key', (ctx) => {
    const key = ctx.params.key!;
    if (!/^[0-9a-f]{16}$/.test(key)) throw invalid(`invalid template key "${key}": expected 16 hexadecimal digits`);
    if (!engine.driver.templates.remove(key)) throw notFound(`No such template: ${key}`);
    ctx.send(204);
  });

  r.add('GET', '/hyperbox/pods', (ctx) => ctx.send(200, engine.pods.list().map((p) => presentPod(engine, p))));

  r.add('POST', '/hyperbox/pods', async (ctx) => {
    const b = await ctx.json(createPodSchema, true);
    const bindings = Object.fromEntries(Object.entries(b.PortBindings ?? {}).map(([k, l]) => [k, (l ?? []).map((x) => ({ HostIp: x.HostIp ?? '', HostPort: x.HostPort ?? '' }))]));
    const pod = engine.pods.create({ name: b.Name, hostname: b.Hostname, portBindings: bindings, labels: b.Labels, network: b.NetworkMode });
    ctx.send(201, { Id: pod.id, Name: pod.name });
  });

  r.add('GET', '/hyperbox/pods/:id', (ctx) => ctx.send(200, presentPod(engine, engine.pods.get(ctx.params.id!))));

  r.add('POST', '/hyperbox/pods/:id/start', async (ctx) => {
    await engine.pods.start(ctx.params.id!);
    ctx.send(204);
  });

  r.add('POST', '/hyperbox/pods/:id/stop', async (ctx) => {
    await engine.pods.stop(ctx.params.id!, ctx.int('t'));
    ctx.send(204);
  });

  r.add('DELETE', '/hyperbox/pods/:id', async (ctx) => {
    const removed = await engine.pods.remove(ctx.params.id!, ctx.bool('force'));
    ctx.send(200, { Containers: removed });
  });
}
