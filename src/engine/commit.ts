/**
 * `commit`: a container's writable layer becomes a new image layer on top of
 * its image. For a root on the host, the layer is read from the overlayfs
 * upper directory on the host (for a root on block devices, through its guest:
 * disk-layer.ts); overlay's own markers become OCI whiteouts (a 0:0 character
 * device is a deleted path, an "opaque" directory hides everything below it in
 * the image).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type tar from 'tar-stream';
import { invalid } from '../common/errors.js';
import { packTree } from '../images/archive/tree.js';
import { applyChanges } from '../images/import.js';
import { MediaType, type ContentStore, type Image, type ImageConfig } from '../images/store.js';
import { AGENT_PATHS, isWhiteout } from './changes.js';
import type { Container } from './container.js';

/** Directories overlay marked opaque (trusted.overlay.opaque=y), relative to upper. */
function opaqueDirs(upper: string): Set<string> {
  let out = '';
  try {
    out = execFileSync('getfattr', ['-R', '-n', 'trusted.overlay.opaque', '--absolute-names', upper], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? ''); // exits 1 when some file lacks the attribute
  }
  const dirs = new Set<string>();
  let file = '';
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) file = line.slice(8);
    else if (/^trusted\.overlay\.opaque="y"/.test(line)) dirs.add(path.relative(upper, file));
  }
  return dirs;
}

export interface CommitOptions {
  ref?: string;
  comment?: string;
  author?: string;
  changes?: string[];
  /** The image config to write instead of the container's (a build's RUN step keeps its image's). */
  config?: ImageConfig['config'];
  /** The history line (a build's RUN step: its command). */
  createdBy?: string;
  /** Record the image as a build step's, hidden from `images` without `-a`. */
  intermediate?: boolean;
}

/** The OCI layer tar of an overlay upper directory on the host. */
export function hostUpperLayer(upper: string): Readable {
  const opaque = opaqueDirs(upper);
  return packTree(upper, {
    transform: ({ name, stat }) => {
      if (AGENT_PATHS.has(`/${name}`)) return null;
      if (isWhiteout(stat)) {
        const dir = path.posix.dirname(name);
        return { name: `${dir === '.' ? '' : `${dir}/`}.wh.${path.posix.basename(name)}`, type: 'file', mode: 0o600 } as Partial<tar.Header>;
      }
      return undefined;
    },
    extraEntries: (name) => (opaque.has(name) ? [{ name: `${name}/.wh..wh..opq`, type: 'file', mode: 0o600 }] : []),
  });
}

/** Stores LAYERSTREAM (an OCI layer tar) as a new layer on IMAGE, with the container's config. Returns the image ID. */
export async function commitContainer(store: ContentStore, c: Container, image: Image, layerStream: Readable, opts: CommitOptions): Promise<string> {
  return store.withLease(async () => {
    const layer = await store.putBlob(layerStream);
    const now = new Date().toISOString();
    const cfg = c.record.Config;
    let containerConfig: ImageConfig['config'] = opts.config ?? {
      ...image.config.config,
      Cmd: cfg.Cmd,
      Entrypoint: cfg.Entrypoint.length ? cfg.Entrypoint : null,
      Env: cfg.Env,
      WorkingDir: cfg.WorkingDir === '/' ? (image.config.config.WorkingDir ?? '') : cfg.WorkingDir,
      User: cfg.User,
      Labels: cfg.Labels,
    };
    try {
      containerConfig = applyChanges(containerConfig, opts.changes ?? []);
    } catch (err) {
      throw invalid((err as Error).message);
    }
    const config: ImageConfig = {
      ...image.config,
      created: now,
      author: opts.author || undefined,
      config: containerConfig,
      rootfs: { type: 'layers', diff_ids: [...image.config.rootfs.diff_ids, layer.digest] },
      history: [...(image.config.history ?? []), { created: now, created_by: opts.createdBy ?? `hyperbox commit ${c.id.slice(0, 12)}`, comment: opts.comment ?? '', author: opts.author ?? '' }],
    };
    const configBlob = await store.putBlob(Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
      layers: [...image.manifest.layers, { mediaType: MediaType.ociLayer, digest: layer.digest, size: layer.size }],
    };
    const man = await store.putBlob(Buffer.from(JSON.stringify(manifest)));
    if (opts.ref) store.tag(opts.ref, man.digest);
    else store.addUntagged(man.digest, MediaType.ociManifest, { intermediate: opts.intermediate });
    return configBlob.digest;
  });
}
