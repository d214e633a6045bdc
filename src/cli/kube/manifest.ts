/**
 * Kubernetes `Pod` manifests (the subset `kube play` runs) turned into hyperbox
 * requests: one pod, its named volumes, and Docker create bodies for its init
 * and app containers. Pure: parsing and translation only, no daemon calls.
 */
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/; // a Kubernetes DNS label

const envVar = z.object({ name: z.string().min(1), value: z.string().optional() }).passthrough();
const containerPort = z
  .object({
    containerPort: z.number().int().min(1).max(65535),
    hostPort: z.number().int().min(1).max(65535).optional(),
    hostIP: z.string().optional(),
    protocol: z.enum(['TCP', 'UDP']).optional(),
    name: z.string().optional(),
  })
  .passthrough();
const volumeMount = z.object({ name: z.string().min(1), mountPath: z.string().startsWith('/'), readOnly: z.boolean().optional() }).passthrough();
const container = z
  .object({
    name: z.string().regex(NAME, 'must be a lowercase DNS label'),
    image: z.string().min(1),
    command: z.array(z.string()).optional(),
    args: z.array(z.string()).optional(),
    workingDir: z.string().optional(),
    env: z.array(envVar).optional(),
    ports: z.array(containerPort).optional(),
    volumeMounts: z.array(volumeMount).optional(),
    tty: z.boolean().optional(),
    stdin: z.boolean().optional(),
  })
  .passthrough();
const volume = z
  .object({
    name: z.string().regex(NAME, 'must be a lowercase DNS label'),
    emptyDir: z.object({}).passthrough().nullish(),
    hostPath: z.object({ path: z.string().startsWith('/'), type: z.string().optional() }).passthrough().optional(),
  })
  .passthrough()
  .refine((v) => (v.emptyDir !== undefined) !== (v.hostPath !== undefined), { message: 'exactly one of emptyDir and hostPath is supported' });

export const podManifestSchema = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Pod'),
  metadata: z.object({ name: z.string().regex(NAME, 'must be a lowercase DNS label'), labels: z.record(z.string(), z.string()).optional() }).passthrough(),
  spec: z
    .object({
      containers: z.array(container).min(1),
      initContainers: z.array(container).optional(),
      volumes: z.array(volume).optional(),
      restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).optional(),
      hostname: z.string().optional(),
    })
    .passthrough(),
});
export type PodManifest = z.infer<typeof podManifestSchema>;
type ContainerSpec = z.infer<typeof container>;

export interface ContainerPlan {
  /** hyperbox container name: `<pod>-<container>`, as podman names them. */
  name: string;
  body: Record<string, unknown>;
}

export interface PodPlan {
  pod: { Name: string; Hostname?: string; PortBindings: Record<string, Array<{ HostIp: string; HostPort: string }>>; Labels: Record<string, string> };
  /** Named volumes backing the pod's emptyDir volumes (removed by `kube down`). */
  emptyDirs: string[];
  init: ContainerPlan[];
  containers: ContainerPlan[];
}

export class ManifestError extends Error {}

/** Every Pod in a (multi-document) YAML file; any other kind is an error. */
export function parseManifests(text: string, file: string): PodManifest[] {
  const docs = parseAllDocuments(text);
  const out: PodManifest[] = [];
  for (const [i, doc] of docs.entries()) {
    if (doc.errors.length) throw new ManifestError(`${file}: document ${i + 1}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    const kind = (value as { kind?: unknown }).kind;
    if (kind !== 'Pod') throw new ManifestError(`${file}: document ${i + 1}: kind ${JSON.stringify(kind ?? null)} is not supported (only Pod is)`);
    const r = podManifestSchema.safeParse(value);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new ManifestError(`${file}: document ${i + 1}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    out.push(r.data);
  }
  if (out.length === 0) throw new ManifestError(`${file}: no Pod in this file`);
  return out;
}

export function emptyDirVolumeName(pod: string, volume: string): string {
  return `${pod}-${volume}`;
}

function restartPolicy(p: PodManifest['spec']['restartPolicy']): { Name: string; MaximumRetryCount: number } {
  if (p === 'Never') return { Name: 'no', MaximumRetryCount: 0 };
  if (p === 'OnFailure') return { Name: 'on-failure', MaximumRetryCount: 0 };
  return { Name: 'always', MaximumRetryCount: 0 };
}

export function planPod(m: PodManifest, podLabel: string): PodPlan {
  const podName = m.metadata.name;
  const volumes = new Map((m.spec.volumes ?? []).map((v) => [v.name, v]));
  const bindings: PodPlan['pod']['PortBindings'] = {};
  const names = new Set<string>();
  const plan = (c: ContainerSpec, restart: { Name: string; MaximumRetryCount: number }): ContainerPlan => {
    if (names.has(c.name)) throw new ManifestError(`pod ${podName}: two containers are named "${c.name}"`);
    names.add(c.name);
    const binds = (c.volumeMounts ?? []).map((vm) => {
      const v = volumes.get(vm.name);
      if (!v) throw new ManifestError(`pod ${podName}: container ${c.name} mounts volume "${vm.name}", which spec.volumes does not define`);
      const source = v.hostPath ? v.hostPath.path : emptyDirVolumeName(podName, v.name);
      return `${source}:${vm.mountPath}${vm.readOnly ? ':ro' : ''}`;
    });
    for (const p of c.ports ?? []) {
      if (!p.hostPort) continue;
      const key = `${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`;
      (bindings[key] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
    }
    return {
      name: `${podName}-${c.name}`,
      body: {
        Image: c.image,
        // Kubernetes' command replaces the entrypoint, its args the image's Cmd.
        Entrypoint: c.command ?? null,
        Cmd: c.args ?? null,
        Env: (c.env ?? []).map((e) => `${e.name}=${e.value ?? ''}`),
        WorkingDir: c.workingDir ?? '',
        Tty: !!c.tty,
        OpenStdin: !!c.stdin,
        Labels: { [podLabel]: podName, 'io.kubernetes.container.name': c.name, 'io.kubernetes.pod.name': podName },
        ExposedPorts: Object.fromEntries((c.ports ?? []).map((p) => [`${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`, {}])),
        HostConfig: { Binds: binds, RestartPolicy: restart },
      },
    };
  };
  const init = (m.spec.initContainers ?? []).map((c) => plan(c, { Name: 'no', MaximumRetryCount: 0 }));
  const containers = m.spec.containers.map((c) => plan(c, restartPolicy(m.spec.restartPolicy)));
  return {
    pod: { Name: podName, Hostname: m.spec.hostname, PortBindings: bindings, Labels: { ...(m.metadata.labels ?? {}) } },
    emptyDirs: [...volumes.values()].filter((v) => v.emptyDir !== undefined).map((v) => emptyDirVolumeName(podName, v.name)),
    init,
    containers,
  };
}
