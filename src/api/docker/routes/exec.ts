/** /containers/{id}/exec and /exec/... routes. */
import { z } from 'zod';
import type { Engine } from '../../../engine/engine.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys, watchDetachKeys } from '../detach-keys.js';
import { muxFrame } from '../http.js';
import type { RouteTable } from '../server.js';

const execCreateSchema = z
  .object({
    Cmd: z.array(z.string()).min(1, 'No exec command specified'),
    Env: z.array(z.string()).nullish(),
    User: z.string().nullish(),
    WorkingDir: z.string().nullish(),
    Tty: z.boolean().nullish(),
    AttachStdin: z.boolean().nullish(),
    AttachStdout: z.boolean().nullish(),
    AttachStderr: z.boolean().nullish(),
    ConsoleSize: z.tuple([z.number(), z.number()]).nullish(),
    DetachKeys: z.string().max(64).nullish(),
  })
  .passthrough();

const execStartSchema = z
  .object({ Detach: z.boolean().nullish(), Tty: z.boolean().nullish(), ConsoleSize: z.tuple([z.number(), z.number()]).nullish() })
  .passthrough();

export function execRoutes(r: RouteTable, engine: Engine): void {
  r.add('POST', '/containers/:id/exec', async (ctx) => {
    const b = await ctx.json(execCreateSchema);
    const e = engine.execs.create(ctx.params.id!, {
      Cmd: b.Cmd,
      Env: b.Env ?? [],
      User: b.User ?? '',
      WorkingDir: b.WorkingDir ?? '',
      Tty: !!b.Tty,
      AttachStdin: !!b.AttachStdin,
      AttachStdout: b.AttachStdout ?? true,
      AttachStderr: b.AttachStderr ?? true,
      ConsoleSize: b.ConsoleSize && b.ConsoleSize[0] > 0 ? (b.ConsoleSize as [number, number]) : undefined,
      DetachKeys: b.DetachKeys ? (parseDetachKeys(b.DetachKeys), b.DetachKeys) : undefined,
    });
    ctx.send(201, { Id: e.ID });
  });

  r.add('POST', '/exec/:id/start', async (ctx) => {
    const b = await ctx.json(execStartSchema, true);
    const e = engine.execs.get(ctx.params.id!);
    if (b.ConsoleSize && b.ConsoleSize[0] > 0) e.Config.ConsoleSize = b.ConsoleSize as [number, number];
    if (b.Detach) {
      await engine.execs.start(e.ID, { end: () => undefined });
      return ctx.send(200);
    }
    const tty = e.Config.Tty;
    const stream = ctx.hijack(tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
    if (!e.Config.AttachStdin) stream.input.resume();
    try {
      await engine.execs.start(e.ID, {
        stdout: e.Config.AttachStdout ? (d) => stream.write(tty ? d : muxFrame(1, d)) : undefined,
        stderr: e.Config.AttachStderr ? (d) => stream.write(tty ? d : muxFrame(2, d)) : undefined,
        stdin: !e.Config.AttachStdin
          ? undefined
          : tty
            ? watchDetachKeys(stream.input, parseDetachKeys(e.Config.DetachKeys || DEFAULT_DETACH_KEYS), () => stream.end())
            : stream.input,
        end: () => stream.end(),
      });
    } catch (err) {
      // After the hijack the only way to report is in-band, as dockerd does.
      const msg = Buffer.from(`${(err as Error).message}\r\n`);
      stream.write(tty ? msg : muxFrame(1, msg));
      stream.end();
    }
  });

  r.add('POST', '/exec/:id/resize', (ctx) => {
    engine.execs.resize(ctx.params.id!, ctx.int('h') ?? 0, ctx.int('w') ?? 0);
    ctx.send(200);
  });

  r.add('GET', '/exec/:id/json', (ctx) => {
    const e = engine.execs.get(ctx.params.id!);
    ctx.send(200, {
      ID: e.ID,
      ContainerID: e.ContainerID,
      Running: e.Running,
      ExitCode: e.ExitCode,
      Pid: e.Pid,
      OpenStdin: e.Config.AttachStdin,
      OpenStdout: e.Config.AttachStdout,
      OpenStderr: e.Config.AttachStderr,
      ProcessConfig: { tty: e.Config.Tty, entrypoint: e.Config.Cmd[0], arguments: e.Config.Cmd.slice(1), user: e.Config.User },
      CanRemove: false,
      DetachKeys: '',
    });
  });
}
