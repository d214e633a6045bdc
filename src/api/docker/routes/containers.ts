/** /containers/... routes of the Docker Engine API. */
import { z } from 'zod';
import { invalid } from '../../../common/errors.js';
import type { Attachment } from '../../../engine/container.js';
import type { Engine } from '../../../engine/engine.js';
import { sample, statsJson, top } from '../../../engine/observe.js';
import { encodePathStat } from '../../../engine/copy.js';
import { pipeline } from 'node:stream/promises';
import { muxFrame, parseFilters, type Ctx } from '../http.js';
import { attachWithHistory, logRoutes, type AttachSink } from './logs.js';
import { containerInspect, containerSummary } from '../present.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys, watchDetachKeys } from '../detach-keys.js';
import { createBodySchema, createRequestOf, restartPolicySchema } from './create-body.js';
import type { RouteTable } from '../server.js';

function requiredPath(ctx: Ctx): string {
  const p = ctx.query.get('path');
  if (!p) throw invalid('path is required');
  return p;
}

const updateBodySchema = z
  .object({ RestartPolicy: restartPolicySchema.nullish(), Memory: z.number().int().nullish(), NanoCpus: z.number().int().nullish() })
  .catchall(z.unknown());

export function containerRoutes(r: RouteTable, engine: Engine): void {
  r.add('POST', '/containers/create', async (ctx) => {
    const body = await ctx.json(createBodySchema);
    const c = await engine.containers.create(createRequestOf(body, ctx.query.get('name') ?? undefined));
    ctx.send(201, { Id: c.id, Warnings: [] });
  });

  r.add('GET', '/containers/json', (ctx) => {
    const list = engine.query.list({ all: ctx.bool('all'), limit: ctx.int('limit'), filters: parseFilters(ctx) });
    ctx.send(200, list.map((c) => containerSummary(c, engine.driver.builtinNetwork)));
  });

  r.add('POST', '/containers/:id/update', async (ctx) => {
    const body = await ctx.json(updateBodySchema, true);
    const { RestartPolicy, Memory, NanoCpus, ...rest } = body;
    // The docker CLI sends every Resources field; zero values mean "unchanged", as in dockerd.
    const unsupported = Object.entries(rest)
      .filter(([, v]) => v !== null && v !== undefined && v !== 0 && v !== '' && v !== false && !(Array.isArray(v) && v.length === 0))
      .map(([k]) => k);
    const warnings = engine.containers.update(ctx.params.id!, {
      RestartPolicy: RestartPolicy?.Name ? { Name: RestartPolicy.Name, MaximumRetryCount: RestartPolicy.MaximumRetryCount ?? 0 } : undefined,
      Memory: Memory || undefined,
      NanoCpus: NanoCpus || undefined,
      unsupported,
    });
    ctx.send(200, { Warnings: warnings });
  });

  r.add('GET', '/containers/:id/json', (ctx) => ctx.send(200, containerInspect(engine.registry.get(ctx.params.id!), engine.driver.builtinNetwork)));

  r.add('POST', '/containers/:id/start', async (ctx) => {
    await engine.lifecycle.start(ctx.params.id!);
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/stop', async (ctx) => {
    await engine.lifecycle.stop(ctx.params.id!, { timeout: ctx.int('t'), signal: ctx.query.get('signal') ?? undefined });
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/restart', async (ctx) => {
    await engine.lifecycle.restart(ctx.params.id!, { timeout: ctx.int('t'), signal: ctx.query.get('signal') ?? undefined });
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/kill', async (ctx) => {
    const signal = ctx.query.get('signal') || undefined;
    const c = engine.registry.get(ctx.params.id!);
    // The CLI's signal proxy forwards SIGWINCH etc.; a container that has just
    // exited must not turn that into an error for `run`.
    if (!c.running && signal && signal !== 'KILL' && signal !== 'SIGKILL' && signal !== '9') return ctx.send(204);
    await engine.lifecycle.kill(c.id, signal);
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/wait', async (ctx) => {
    const cond = ctx.query.get('condition') || 'not-running';
    if (!['not-running', 'next-exit', 'removed'].includes(cond)) throw invalid(`invalid condition: "${cond}"`);
    const c = engine.registry.get(ctx.params.id!);
    const code = engine.lifecycle.wait(c.id, cond as 'not-running');
    const res = ctx.beginStream('application/json');
    const status = await code;
    const err = c.record.State.Error;
    res.end(JSON.stringify(err ? { StatusCode: status, Error: { Message: err } } : { StatusCode: status }) + '\n');
  });

  r.add('POST', '/containers/:id/resize', (ctx) => {
    engine.lifecycle.resize(ctx.params.id!, ctx.int('h') ?? 0, ctx.int('w') ?? 0);
    ctx.send(200);
  });

  r.add('POST', '/containers/:id/attach', async (ctx) => {
    const c = engine.registry.get(ctx.params.id!);
    const tty = c.record.Config.Tty;
    const wantStdin = ctx.bool('stdin') && c.record.Config.OpenStdin;
    const wantOut = ctx.bool('stdout');
    const wantErr = ctx.bool('stderr');
    // dockerode sends its options as a JSON body: that is not stdin; only what follows the request is.
    if (ctx.req.headers['content-length']) await ctx.rawBody();
    // As dockerd: on a tty, the detach keys (ctrl-p,ctrl-q unless given) detach the client.
    const detachKeys = tty && wantStdin ? parseDetachKeys(ctx.query.get('detachKeys') || DEFAULT_DETACH_KEYS) : undefined;
    const stream = ctx.hijack(tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
    let sink: AttachSink = { write: (d) => stream.write(d), end: () => stream.end() };
    const a: Attachment = {
      stdout: wantOut ? (d) => sink.write(tty ? d : muxFrame(1, d)) : undefined,
      stderr: wantErr ? (d) => sink.write(tty ? d : muxFrame(2, d)) : undefined,
      stdin: !wantStdin ? undefined : detachKeys ? watchDetachKeys(stream.input, detachKeys, () => (engine.lifecycle.detach(c, a), stream.end())) : stream.input,
      end: () => sink.end(),
    };
    if (!wantStdin) stream.input.resume();
    stream.onClose(() => engine.lifecycle.detach(c, a));
    if (!ctx.bool('logs')) return void engine.lifecycle.attach(c.id, a);
    await attachWithHistory(c, stream, { stdout: wantOut, stderr: wantErr }, (held) => {
      sink = held;
      engine.lifecycle.attach(c.id, a);
    });
  });

  logRoutes(r, engine);

  r.add('POST', '/containers/:id/pause', async (ctx) => {
    await engine.lifecycle.pause(ctx.params.id!);
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/unpause', async (ctx) => {
    await engine.lifecycle.unpause(ctx.params.id!);
    ctx.send(204);
  });

  r.add('POST', '/containers/:id/rename', (ctx) => {
    const name = ctx.query.get('name');
    if (!name) throw invalid('Neither old nor new names may be empty');
    engine.containers.rename(ctx.params.id!, name);
    ctx.send(204);
  });

  r.add('POST', '/containers/prune', async (ctx) => {
    const ids = await engine.containers.prune();
    ctx.send(200, { ContainersDeleted: ids, SpaceReclaimed: 0 });
  });

  r.add('HEAD', '/containers/:id/archive', async (ctx) => {
    const stat = await engine.files.stat(ctx.params.id!, requiredPath(ctx));
    ctx.res!.setHeader('X-Docker-Container-Path-Stat', encodePathStat(stat));
    ctx.send(200);
  });

  r.add('GET', '/containers/:id/archive', async (ctx) => {
    const { stat, tar } = await engine.files.archive(ctx.params.id!, requiredPath(ctx));
    ctx.res!.setHeader('X-Docker-Container-Path-Stat', encodePathStat(stat));
    const out = ctx.beginStream('application/x-tar');
    await pipeline(tar, out).catch(() => out.destroy());
  });

  r.add('PUT', '/containers/:id/archive', async (ctx) => {
    await engine.files.extract(ctx.params.id!, requiredPath(ctx), ctx.req, { copyUidGid: ctx.bool('copyUIDGID') });
    ctx.send(200);
  });

  r.add('GET', '/containers/:id/export', async (ctx) => {
    const tar = await engine.files.export(ctx.params.id!);
    const out = ctx.beginStream('application/x-tar');
    await pipeline(tar, out).catch(() => out.destroy());
  });

  r.add('POST', '/commit', async (ctx) => {
    const container = ctx.query.get('container');
    if (!container) throw invalid('container is required');
    const repo = ctx.query.get('repo');
    const tag = ctx.query.get('tag');
    const id = await engine.files.commit(container, {
      ref: repo ? `${repo}:${tag || 'latest'}` : undefined,
      comment: ctx.query.get('comment') ?? undefined,
      author: ctx.query.get('author') ?? undefined,
      changes: ctx.query.getAll('changes').flatMap((c) => c.split('\n')).filter(Boolean),
      pause: ctx.bool('pause', true),
    });
    ctx.send(201, { Id: id });
  });

  r.add('GET', '/containers/:id/changes', async (ctx) => ctx.send(200, await engine.files.changes(ctx.params.id!)));

  r.add('GET', '/containers/:id/top', async (ctx) => ctx.send(200, await top(engine.registry.get(ctx.params.id!))));

  r.add('GET', '/containers/:id/stats', async (ctx) => {
    const c = engine.registry.get(ctx.params.id!);
    const stream = ctx.bool('stream', true) && !ctx.bool('one-shot');
    let prev = await sample(c);
    if (!stream) {
      // Like dockerd: a one-shot answer still carries a CPU delta, over a short interval.
      if (!ctx.bool('one-shot')) await new Promise((r) => setTimeout(r, 500));
      const cur = ctx.bool('one-shot') ? prev : await sample(c);
      return ctx.send(200, statsJson(c, cur, ctx.bool('one-shot') ? undefined : prev));
    }
    const res = ctx.beginStream('application/json');
    let open = true;
    res.once('close', () => (open = false));
    res.write(JSON.stringify(statsJson(c, prev, undefined)) + '\n');
    while (open && c.running) {
      await new Promise((r) => setTimeout(r, 1000));
      const cur = await sample(c);
      if (open) res.write(JSON.stringify(statsJson(c, cur, prev)) + '\n');
      prev = cur;
    }
    if (open) res.end();
  });

  r.add('DELETE', '/containers/:id', async (ctx) => {
    await engine.containers.remove(ctx.params.id!, { force: ctx.bool('force'), volumes: ctx.bool('v') });
    ctx.send(204);
  });
}
