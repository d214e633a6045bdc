/**
 * `pull`: manifest (or index, then the platform's manifest), config and layers
 * into the content store, each verified against its digest and size as it is
 * written. Blobs already in the store are not downloaded again. The registry
 * is untrusted: manifests are bounded, media types checked, digests verified.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { z } from 'zod';
import { invalid, notFound } from '../../common/errors.js';
import { familiarName, type ImageRef } from '../reference.js';
import { imageConfigSchema, manifestSchema, type ContentStore } from '../store.js';
import { RegistryClient, registryError, type RegistryOptions } from './client.js';

export const ManifestTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;
const ACCEPT = Object.values(ManifestTypes).join(', ');
const MAX_MANIFEST = 4 * 1024 * 1024;
const LAYER_TYPES = /^application\/vnd\.(oci\.image\.layer\.v1\.tar(\+gzip|\+zstd)?|docker\.image\.rootfs\.diff\.tar\.gzip)$/;

export type Progress = (msg: { status: string; id?: string; progressDetail?: { current?: number; total?: number }; progress?: string }) => void;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function parsePlatform(s: string | undefined): Platform {
  if (!s) return { os: 'linux', architecture: 'amd64' };
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw invalid(`invalid platform "${s}": expected os/arch[/variant]`);
  return { os, architecture, variant };
}

export const indexSchema = z.object({
  manifests: z.array(
    z.object({
      mediaType: z.string().optional(),
      digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
      size: z.number().int().nonnegative(),
      platform: z.object({ os: z.string(), architecture: z.string(), variant: z.string().optional() }).optional(),
    }),
  ),
});

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readBounded(res: Response, limit: number): Promise<Buffer> {
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > limit) throw invalid(`registry sent a ${len}-byte manifest (limit ${limit})`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += c.length;
    if (size > limit) throw invalid(`registry sent a manifest larger than ${limit} bytes`);
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks);
}

export async function fetchManifest(client: RegistryClient, reference: string, expectedDigest?: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
  const res = await client.repo('GET', `manifests/${reference}`, { headers: { Accept: ACCEPT } });
  if (!res.ok) {
    const err = await registryError(res, `manifest for ${client.ref.domain}/${client.ref.path}:${reference}`);
    throw res.status === 404 ? notFound(`manifest for ${familiarName({ ...client.ref, tag: reference.startsWith('sha256:') ? undefined : reference, digest: reference.startsWith('sha256:') ? reference : undefined })} not found: manifest unknown`) : err;
  }
  const body = await readBounded(res, MAX_MANIFEST);
  const digest = sha256(body);
  if (expectedDigest && digest !== expectedDigest) throw invalid(`manifest digest mismatch: expected ${expectedDigest}, got ${digest}`);
  let mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: string };
    if (parsed.mediaType) mediaType = parsed.mediaType;
  } catch {
    throw invalid('registry sent a manifest that is not JSON');
  }
  if (!(Object.values(ManifestTypes) as string[]).includes(mediaType)) throw invalid(`unsupported manifest type "${mediaType}"`);
  return { body, mediaType, digest };
}

function short(digest: string): string {
  return digest.slice(7, 19);
}

function bar(current: number, total: number): string {
  const width = 50;
  const filled = total ? Math.min(width, Math.floor((current / total) * width)) : 0;
  const mb = (n: number) => `${(n / 1e6).toFixed(1)}MB`;
  return `[${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${' '.repeat(width - filled)}] ${mb(current)}/${mb(total)}`;
}

async function fetchBlob(store: ContentStore, client: RegistryClient, digest: string, size: number, progress?: Progress): Promise<void> {
  const res = await client.repo('GET', `blobs/${digest}`);
  if (!res.ok || !res.body) throw await registryError(res, `blob ${digest}`);
  let current = 0;
  let lastReport = 0;
  const source = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
  source.on('data', (c: Buffer) => {
    current += c.length;
    if (progress && Date.now() - lastReport > 200) {
      lastReport = Date.now();
      progress({ status: 'Downloading', id: short(digest), progressDetail: { current, total: size }, progress: bar(current, size) });
    }
  });
  await store.putBlob(source, { digest, size });
}

export interface PullResult {
  manifestDigest: string;
  /** The digest a user would pin: the index's for a multi-platform image. */
  repoDigest: string;
  imageId: string;
  downloaded: boolean;
}

export async function pullImage(store: ContentStore, ref: ImageRef, opts: RegistryOptions & { platform?: string; progress?: Progress }): Promise<PullResult> {
  const client = new RegistryClient(ref, opts);
  const platform = parsePlatform(opts.platform);
  const progress = opts.progress;
  return store.withLease(async () => {
    let top = await fetchManifest(client, ref.digest ?? ref.tag ?? 'latest', ref.digest);
    const repoDigest = top.digest;
    if (top.mediaType === ManifestTypes.ociIndex || top.mediaType === ManifestTypes.dockerList) {
      const index = indexSchema.safeParse(JSON.parse(top.body.toString('utf8')));
      if (!index.success) throw invalid('registry sent a malformed image index');
      const pick = index.data.manifests.find(
        (m) => m.platform?.os === platform.os && m.platform.architecture === platform.architecture && (!platform.variant || m.platform.variant === platform.variant),
      );
      if (!pick) throw notFound(`no matching manifest for ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''} in the manifest list entries`);
      top = await fetchManifest(client, pick.digest, pick.digest);
      if (top.body.length !== pick.size) throw invalid(`manifest ${pick.digest} is ${top.body.length} bytes, the index says ${pick.size}`);
    }
    const parsed = manifestSchema.safeParse(JSON.parse(top.body.toString('utf8')));
    if (!parsed.success) throw invalid('registry sent a malformed image manifest');
    const manifest = parsed.data;
    for (const l of manifest.layers) {
      if (!LAYER_TYPES.test(l.mediaType)) throw invalid(`unsupported layer type "${l.mediaType}"`);
    }
    const alreadyHad = store.hasBlob(top.digest);
    let downloaded = false;
    for (const l of manifest.layers) progress?.({ status: store.hasBlob(l.digest) ? 'Already exists' : 'Pulling fs layer', id: short(l.digest) });
    // An image config is read whole into memory: bounded like a manifest.
    if (manifest.config.size > MAX_MANIFEST) throw invalid(`image config of ${manifest.config.size} bytes is larger than ${MAX_MANIFEST} bytes`);
    if (!store.hasBlob(manifest.config.digest)) {
      await fetchBlob(store, client, manifest.config.digest, manifest.config.size);
      downloaded = true;
    }
    const config = imageConfigSchema.safeParse(JSON.parse(store.readBlob(manifest.config.digest).toString('utf8')));
    if (!config.success) throw invalid('the image config is malformed');
    if (config.data.rootfs.diff_ids.length !== manifest.layers.length) throw invalid('the image config and manifest disagree on the number of layers');
    // Two layers at a time: enough to overlap round trips on a 2-core machine.
    const queue = manifest.layers.filter((l) => !store.hasBlob(l.digest));
    await Promise.all(
      [0, 1].map(async () => {
        for (let l = queue.shift(); l; l = queue.shift()) {
          await fetchBlob(store, client, l.digest, l.size, progress);
          progress?.({ status: 'Verifying Checksum', id: short(l.digest) });
          progress?.({ status: 'Download complete', id: short(l.digest) });
          progress?.({ status: 'Pull complete', id: short(l.digest) });
          downloaded = true;
        }
      }),
    );
    await store.putBlob(top.body, { digest: top.digest, size: top.body.length });
    store.recordSource(manifest.layers.map((l) => l.digest).concat(manifest.config.digest), `${ref.domain}/${ref.path}`);
    return { manifestDigest: top.digest, repoDigest, imageId: manifest.config.digest, downloaded: downloaded || !alreadyHad };
  });
}
