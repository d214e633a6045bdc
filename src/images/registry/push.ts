/**
 * `push`: the image's blobs, then its manifest. A blob the registry has is
 * skipped; one it has in another repository we pulled it from is mounted
 * (cross-repository blob mount) instead of uploaded; the rest go up in one
 * monolithic PUT each.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { internal } from '../../common/errors.js';
import { familiarName, type ImageRef } from '../reference.js';
import type { ContentStore, Descriptor, Image } from '../store.js';
import { RegistryClient, registryError, type RegistryOptions } from './client.js';
import type { Progress } from './pull.js';

const short = (d: string) => d.slice(7, 19);

async function blobExists(client: RegistryClient, digest: string): Promise<boolean> {
  const res = await client.repo('HEAD', `blobs/${digest}`, { scope: 'push' });
  await res.arrayBuffer().catch(() => undefined);
  return res.ok;
}

/** Tries a cross-repository mount from a repository of the same registry. */
async function tryMount(client: RegistryClient, store: ContentStore, ref: ImageRef, digest: string): Promise<string | undefined> {
  for (const source of store.sourcesOf(digest)) {
    const [domain, ...rest] = source.split('/');
    const from = rest.join('/');
    if (domain !== ref.domain || from === ref.path) continue;
    const res = await client.repo('POST', `blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, { scope: 'push', extraScopes: [`repository:${from}:pull`] });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status === 201) return from;
    // 202: the registry started an ordinary upload instead; abandon it.
    const loc = res.headers.get('location');
    if (res.status === 202 && loc) await client.request('DELETE', new URL(loc, client.base).toString(), { scope: 'push' }).then((r) => r.arrayBuffer()).catch(() => undefined);
  }
  return undefined;
}

async function upload(client: RegistryClient, store: ContentStore, d: Descriptor): Promise<void> {
  const start = await client.repo('POST', 'blobs/uploads/', { scope: 'push' });
  await start.arrayBuffer().catch(() => undefined);
  const location = start.headers.get('location');
  if (start.status !== 202 || !location) throw await registryError(start, `starting the upload of ${d.digest}`);
  const url = new URL(location, client.base);
  url.searchParams.set('digest', d.digest);
  const body = Readable.toWeb(fs.createReadStream(store.blobPath(d.digest))) as unknown as ReadableStream;
  const res = await client.request('PUT', url.toString(), {
    scope: 'push',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(d.size) },
    body,
  });
  if (res.status !== 201) throw await registryError(res, `uploading ${d.digest}`);
  await res.arrayBuffer().catch(() => undefined);
}

export async function pushImage(store: ContentStore, image: Image, ref: ImageRef, opts: RegistryOptions & { progress?: Progress }): Promise<{ digest: string; size: number }> {
  const client = new RegistryClient(ref, opts);
  const progress = opts.progress;
  const tag = ref.tag ?? 'latest';
  progress?.({ status: `The push refers to repository [${familiarName({ ...ref, tag: undefined, digest: undefined })}]` });
  for (const l of [...image.manifest.layers].reverse()) progress?.({ status: 'Preparing', id: short(l.digest) });
  for (const d of [...image.manifest.layers, image.manifest.config]) {
    const isLayer = d !== image.manifest.config;
    if (await blobExists(client, d.digest)) {
      if (isLayer) progress?.({ status: 'Layer already exists', id: short(d.digest) });
      continue;
    }
    const mountedFrom = await tryMount(client, store, ref, d.digest);
    if (mountedFrom) {
      if (isLayer) progress?.({ status: `Mounted from ${mountedFrom}`, id: short(d.digest) });
      continue;
    }
    if (isLayer) progress?.({ status: 'Pushing', id: short(d.digest), progressDetail: { current: 0, total: d.size } });
    await upload(client, store, d);
    if (isLayer) progress?.({ status: 'Pushed', id: short(d.digest) });
  }
  const manifest = store.readBlob(image.manifestDigest);
  const mediaType = image.manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
  const res = await client.repo('PUT', `manifests/${tag}`, { scope: 'push', headers: { 'Content-Type': mediaType }, body: manifest });
  if (res.status !== 201) throw await registryError(res, `pushing the manifest of ${familiarName(ref)}`);
  await res.arrayBuffer().catch(() => undefined);
  const digest = res.headers.get('docker-content-digest') ?? image.manifestDigest;
  if (digest !== image.manifestDigest) throw internal(`the registry stored the manifest as ${digest}, expected ${image.manifestDigest}`);
  store.recordSource([...image.manifest.layers.map((l) => l.digest), image.manifest.config.digest], `${ref.domain}/${ref.path}`);
  return { digest, size: manifest.length };
}
