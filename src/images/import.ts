/**
 * `import`: a root filesystem tarball becomes a one-layer image, with optional
 * Dockerfile-style changes (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL).
 */
import type { Readable } from 'node:stream';
import { invalid } from '../common/errors.js';
import { maybeDecompress } from './layer.js';
import { MediaType, type ContentStore, type ImageConfig } from './store.js';

type ContainerConfig = ImageConfig['config'];

function parseJsonOrShell(value: string): string[] {
  const v = value.trim();
  if (v.startsWith('[')) {
    try {
      const arr: unknown = JSON.parse(v);
      if (Array.isArray(arr) && arr.every((x) => typeof x === 'string')) return arr as string[];
    } catch {
      /* fall through to shell form */
    }
  }
  return ['/bin/sh', '-c', v];
}

/** Applies Dockerfile-like change lines ("CMD ["sh"]", "ENV A=b") to a config. */
export function applyChanges(config: ContainerConfig, changes: string[]): ContainerConfig {
  const out: ContainerConfig = { ...config };
  for (const line of changes) {
    const m = /^\s*(\w+)\s+(.*)$/s.exec(line);
    if (!m) throw invalid(`invalid change "${line}"`);
    const [, instr, rest] = m as unknown as [string, string, string];
    switch (instr.toUpperCase()) {
      case 'CMD':
        out.Cmd = parseJsonOrShell(rest);
        break;
      case 'ENTRYPOINT':
        out.Entrypoint = parseJsonOrShell(rest);
        break;
      case 'ENV': {
        const kv = rest.includes('=') ? rest.trim() : rest.trim().replace(/\s+/, '=');
        const key = kv.split('=')[0]!;
        out.Env = [...(out.Env ?? []).filter((e) => !e.startsWith(`${key}=`)), kv];
        break;
      }
      case 'WORKDIR':
        out.WorkingDir = rest.trim();
        break;
      case 'USER':
        out.User = rest.trim();
        break;
      case 'LABEL': {
        const [k, ...v] = rest.trim().split('=');
        out.Labels = { ...(out.Labels ?? {}), [k!]: v.join('=').replace(/^"|"$/g, '') };
        break;
      }
      case 'STOPSIGNAL':
        out.StopSignal = rest.trim();
        break;
      default:
        throw invalid(`${instr} is not a valid change command`);
    }
  }
  return out;
}

export async function importRootfs(
  store: ContentStore,
  source: Readable,
  opts: { ref?: string; changes?: string[]; message?: string },
): Promise<string> {
  return store.withLease(() => importUnderLease(store, source, opts));
}

async function importUnderLease(store: ContentStore, source: Readable, opts: { ref?: string; changes?: string[]; message?: string }): Promise<string> {
  const layer = await store.putBlob(await maybeDecompress(source));
  const now = new Date().toISOString();
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    created: now,
    config: applyChanges({ Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] }, opts.changes ?? []),
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created: now, created_by: 'hyperbox import', comment: opts.message ?? 'Imported from tarball' }],
  };
  const cfg = await store.putBlob(Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }],
  };
  const man = await store.putBlob(Buffer.from(JSON.stringify(manifest)));
  if (opts.ref) store.tag(opts.ref, man.digest);
  else store.addUntagged(man.digest);
  return cfg.digest;
}
