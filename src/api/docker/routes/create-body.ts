/**
 * The body of POST /containers/create (Docker's Config + HostConfig +
 * NetworkingConfig), checked, and turned into the engine's CreateRequest.
 */
import { z } from 'zod';
import type { CreateRequest } from '../../../engine/create-spec.js';

const stringList = z.union([z.array(z.string()), z.string().transform((s) => [s])]).nullish();

export const restartPolicySchema = z.object({
  Name: z.enum(['', 'no', 'always', 'unless-stopped', 'on-failure']).nullish(),
  MaximumRetryCount: z.number().int().nonnegative().nullish(),
});

export const createBodySchema = z
  .object({
    Image: z.string().min(1, 'Image is required'),
    NetworkingConfig: z
      .object({ EndpointsConfig: z.record(z.string(), z.object({ Aliases: z.array(z.string()).nullish(), MacAddress: z.string().nullish() }).passthrough().nullish()).nullish() })
      .passthrough()
      .nullish(),
    Cmd: stringList,
    Entrypoint: stringList,
    Env: z.array(z.string()).nullish(),
    WorkingDir: z.string().nullish(),
    User: z.string().nullish(),
    Hostname: z.string().nullish(),
    Tty: z.boolean().nullish(),
    OpenStdin: z.boolean().nullish(),
    StdinOnce: z.boolean().nullish(),
    AttachStdin: z.boolean().nullish(),
    AttachStdout: z.boolean().nullish(),
    AttachStderr: z.boolean().nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
    StopSignal: z.string().nullish(),
    StopTimeout: z.number().int().nullish(),
    MacAddress: z.string().nullish(),
    ExposedPorts: z.record(z.string(), z.object({}).passthrough()).nullish(),
    HostConfig: z
      .object({
        AutoRemove: z.boolean().nullish(),
        Memory: z.number().int().nullish(),
        NanoCpus: z.number().int().nullish(),
        ConsoleSize: z.tuple([z.number(), z.number()]).nullish(),
        LogConfig: z.object({ Type: z.string().nullish(), Config: z.record(z.string(), z.string()).nullish() }).nullish(),
        RestartPolicy: restartPolicySchema.nullish(),
        Binds: z.array(z.string()).nullish(),
        Mounts: z
          .array(
            z
              .object({
                Type: z.string().nullish(),
                Source: z.string().nullish(),
                Target: z.string().nullish(),
                ReadOnly: z.boolean().nullish(),
                TmpfsOptions: z.object({ SizeBytes: z.number().nullish(), Mode: z.number().nullish() }).passthrough().nullish(),
              })
              .passthrough(),
          )
          .nullish(),
        Tmpfs: z.record(z.string(), z.string()).nullish(),
        ReadonlyRootfs: z.boolean().nullish(),
        ExtraHosts: z.array(z.string().max(300)).max(256).nullish(),
        StorageOpt: z.record(z.string(), z.string()).nullish(),
        NetworkMode: z.string().nullish(),
        PortBindings: z
          .record(z.string(), z.array(z.object({ HostIp: z.string().nullish(), HostPort: z.string().nullish() }).passthrough()).nullish())
          .nullish(),
        PublishAllPorts: z.boolean().nullish(),
        CapAdd: z.array(z.string().max(64)).max(64).nullish(),
        CapDrop: z.array(z.string().max(64)).max(64).nullish(),
        Privileged: z.boolean().nullish(),
        Init: z.boolean().nullish(),
        GroupAdd: z.array(z.string().max(64)).max(64).nullish(),
        VolumesFrom: z.array(z.string().max(300)).max(64).nullish(),
        Links: z.array(z.string().max(300)).max(64).nullish(),
        PidMode: z.string().nullish(),
        UTSMode: z.string().nullish(),
        IpcMode: z.string().nullish(),
      })
      .passthrough()
      .nullish(),
  })
  .passthrough();

export type CreateBody = z.infer<typeof createBodySchema>;

export function createRequestOf(body: CreateBody, name: string | undefined): CreateRequest {
  const hc = body.HostConfig ?? {};
  return {
    name,
    aliases: Object.values(body.NetworkingConfig?.EndpointsConfig ?? {}).flatMap((e) => e?.Aliases ?? []),
    config: {
      Image: body.Image,
      Cmd: body.Cmd ?? undefined,
      Entrypoint: body.Entrypoint ?? undefined,
      Env: body.Env ?? undefined,
      WorkingDir: body.WorkingDir ?? undefined,
      User: body.User ?? undefined,
      Hostname: body.Hostname ?? undefined,
      Tty: body.Tty ?? false,
      OpenStdin: body.OpenStdin ?? false,
      StdinOnce: body.StdinOnce ?? false,
      AttachStdin: body.AttachStdin ?? false,
      AttachStdout: body.AttachStdout ?? true,
      AttachStderr: body.AttachStderr ?? true,
      Labels: body.Labels ?? undefined,
      StopSignal: body.StopSignal ?? undefined,
      StopTimeout: body.StopTimeout ?? undefined,
      ExposedPorts: body.ExposedPorts ?? undefined,
      // Since API 1.44 in the endpoint settings; before, at the top level.
      MacAddress: body.MacAddress || Object.values(body.NetworkingConfig?.EndpointsConfig ?? {}).find((e) => e?.MacAddress)?.MacAddress || undefined,
    },
    host: {
      AutoRemove: hc.AutoRemove ?? false,
      Memory: hc.Memory ?? 0,
      NanoCpus: hc.NanoCpus ?? 0,
      ConsoleSize: hc.ConsoleSize && hc.ConsoleSize[0] > 0 ? (hc.ConsoleSize as [number, number]) : undefined,
      RestartPolicy: { Name: hc.RestartPolicy?.Name ?? '', MaximumRetryCount: hc.RestartPolicy?.MaximumRetryCount ?? 0 },
      LogConfig: hc.LogConfig ? { Type: hc.LogConfig.Type ?? 'json-file', Config: hc.LogConfig.Config ?? {} } : undefined,
      Binds: hc.Binds ?? undefined,
      Mounts: hc.Mounts?.map((m) => ({
        Type: m.Type ?? undefined,
        Source: m.Source ?? undefined,
        Target: m.Target ?? undefined,
        ReadOnly: m.ReadOnly ?? undefined,
        TmpfsOptions: m.TmpfsOptions ? { SizeBytes: m.TmpfsOptions.SizeBytes ?? undefined, Mode: m.TmpfsOptions.Mode ?? undefined } : undefined,
      })),
      Tmpfs: hc.Tmpfs ?? undefined,
      ReadonlyRootfs: hc.ReadonlyRootfs ?? false,
      ExtraHosts: hc.ExtraHosts ?? undefined,
      StorageOpt: hc.StorageOpt ?? undefined,
      NetworkMode: hc.NetworkMode ?? undefined,
      PortBindings: hc.PortBindings
        ? Object.fromEntries(Object.entries(hc.PortBindings).map(([k, l]) => [k, (l ?? []).map((b) => ({ HostIp: b.HostIp ?? '', HostPort: b.HostPort ?? '' }))]))
        : undefined,
      PublishAllPorts: hc.PublishAllPorts ?? false,
      CapAdd: hc.CapAdd ?? undefined,
      CapDrop: hc.CapDrop ?? undefined,
      Privileged: hc.Privileged ?? false,
      Init: hc.Init ?? undefined,
      GroupAdd: hc.GroupAdd?.length ? hc.GroupAdd : undefined,
      VolumesFrom: hc.VolumesFrom?.length ? hc.VolumesFrom : undefined,
      Links: hc.Links?.length ? hc.Links : undefined,
    },
    namespaces: { pid: hc.PidMode ?? '', uts: hc.UTSMode ?? '', ipc: hc.IpcMode ?? '' },
  };
}
