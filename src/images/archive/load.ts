/**
 * `load`: images from a tar in any of the forms `docker save` and the OCI tools
 * write: Docker 25+ (OCI layout + manifest.json), the legacy docker-archive
 * (<id>/layer.tar, <id>.json, manifest.json), or a plain OCI image layout.
 *
 * The archive is hostile. No name in it is ever used as a host path: every
 * regular entry is streamed straight into the content store (which hashes it),
 * and names are only looked up in a map of entry name -> digest. Layers must
 * match the config's diff_ids. Tags are written only once every image of the
 * archive checked out, so a bad archive leaves the image list unchanged.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { z } from 'zod';
import { invalid } from '../../common/errors.js';
import { maybeDecompress } from '../layer.js';
import { familiarName, parseReference } from '../reference.js';
import { imageConfigSchema, manifestSchema, MediaType, type ContentStore, type Descriptor } from '../store.js';

const MAX_ENTRIES = 100_000;
const MAX_JSON = 4 * 1024 * 1024;

const dockerManifestSchema = z.array(
  z.object({
    Config: z.string(),
    RepoTags: z.array(z.string()).nullish(),
    Layers: z.array(z.string()),
  }),
);

const indexSchema = z.object({
  manifests: z.array(
    z.object({
      mediaType: z.string().optional(),
      digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
      size: z.number().optional(),
      annotations: z.record(z.string(), z.string()).optional(),
      platform: z.object({ os: z.string().optional(), architecture: z.string().optional() }).optional(),
    }),
  ),
});

interface Entry {
  digest: string;
  size: number;
}

function normalizeName(name: string): string {
  return path.posix.normalize(name.replace(/^(\.\/)+/, '')).replace(/\/+$/, '');
}

export interface LoadedImage {
  id: string;
  tags: string[];
}

export async function loadImages(store: ContentStore, source: Readable, log: (line: string) => void = () => undefined): Promise<LoadedImage[]> {
  return store.withLease(async () => {
    const entries = new Map<string, Entry>();
    const extract = tar.extract();
    const consume = (async () => {
      for await (const entry of extract) {
        const h = entry.header;
        if (entries.size >= MAX_ENTRIES) throw invalid('archive has too many entries');
        if (h.type === 'file' || h.type === 'contiguous-file') {
          const blob = await store.putBlob(entry as unknown as Readable, { size: h.size });
          entries.set(normalizeName(h.name), blob);
        } else {
          entry.resume();
        }
      }
    })();
    const [piped, consumed] = await Promise.allSettled([pipeline(await maybeDecompress(source), extract), consume]);
    if (consumed.status === 'rejected') throw consumed.reason instanceof Error && 'kind' in consumed.reason ? consumed.reason : invalid(`malformed archive: ${(consumed.reason as Error).message}`);
    if (piped.status === 'rejected') throw invalid(`malformed archive: ${(piped.reason as Error).message}`);

    const json = (name: string): unknown => {
      const e = entries.get(name);
      if (!e) throw invalid(`archive has no ${name}`);
      if (e.size > MAX_JSON) throw invalid(`${name} is larger than ${MAX_JSON} bytes`);
      try {
        return JSON.parse(store.readBlob(e.digest).toString('utf8'));
      } catch (err) {
        throw invalid(`${name} is not valid JSON: ${(err as Error).message}`);
      }
    };
    const lookup = (name: string, what: string): Entry => {
      const e = entries.get(normalizeName(name));
      if (!e || name.includes('..') || name.startsWith('/')) throw invalid(`${what} "${name}" is not in the archive`);
      return e;
    };

    const pending: Array<{ manifest: Buffer; configDigest: string; tags: string[] }> = [];
    if (entries.has('manifest.json')) {
      const parsed = dockerManifestSchema.safeParse(json('manifest.json'));
      if (!parsed.success) throw invalid(`manifest.json is not a docker-archive manifest: ${parsed.error.issues[0]?.message}`);
      for (const m of parsed.data) {
        const config = lookup(m.Config, 'config');
        const layers = m.Layers.map((l) => lookup(l, 'layer'));
        pending.push(await buildImage(store, config, layers, m.RepoTags ?? []));
      }
    } else if (entries.has('index.json')) {
      const index = indexSchema.safeParse(json('index.json'));
      if (!index.success) throw invalid(`index.json is not an OCI index: ${index.error.issues[0]?.message}`);
      for (const d of index.data.manifests) {
        const manifest = resolveOciManifest(store, entries, d, json);
        const config = lookup(`blobs/sha256/${manifest.config.digest.slice(7)}`, 'config');
        const layers = manifest.layers.map((l: Descriptor) => lookup(`blobs/sha256/${l.digest.slice(7)}`, 'layer'));
        // ref.name is often a bare tag ("v1"), which names no repository: only a full name counts.
        const refName = d.annotations?.['org.opencontainers.image.ref.name'];
        const name = d.annotations?.['io.containerd.image.name'] ?? (refName && /[/:]/.test(refName) ? refName : undefined);
        let tags: string[] = [];
        try {
          if (name) tags = [familiarName(parseReference(name))];
        } catch {
          /* a bare tag like "latest" names no repository: load untagged */
        }
        pending.push(await buildImage(store, config, layers, tags));
      }
    } else {
      throw invalid('not an image archive: no manifest.json or index.json');
    }

    // Everything checked: now the names.
    const out: LoadedImage[] = [];
    for (const p of pending) {
      const man = await store.putBlob(p.manifest);
      for (const t of p.tags) store.tag(t, man.digest);
      if (!p.tags.length) store.addUntagged(man.digest);
      for (const t of p.tags) log(`Loaded image: ${t}`);
      if (!p.tags.length) log(`Loaded image ID: ${p.configDigest}`);
      out.push({ id: p.configDigest, tags: p.tags });
    }
    return out;
  });
}

/** An OCI layout entry: the blob file's name must be its digest. */
function resolveOciManifest(store: ContentStore, entries: Map<string, Entry>, d: { digest: string }, json: (name: string) => unknown, depth = 0): z.infer<typeof manifestSchema> {
  if (depth > 2) throw invalid('nested indexes too deep');
  const name = `blobs/sha256/${d.digest.slice(7)}`;
  const e = entries.get(name);
  if (!e) throw invalid(`manifest ${d.digest} is not in the archive`);
  if (e.digest !== d.digest) throw invalid(`blob ${name} does not match its digest (${e.digest})`);
  const doc = json(name) as { manifests?: unknown; config?: unknown };
  if (doc.manifests) {
    const idx = indexSchema.parse(doc);
    const pick = idx.manifests.find((m) => (m.platform?.os ?? 'linux') === 'linux' && (m.platform?.architecture ?? 'amd64') === 'amd64');
    if (!pick) throw invalid('the archive has no linux/amd64 image');
    return resolveOciManifest(store, entries, pick, json, depth + 1);
  }
  const parsed = manifestSchema.safeParse(doc);
  if (!parsed.success) throw invalid(`manifest ${d.digest} is not an image manifest`);
  return parsed.data;
}

/** Checks config and layers (each layer's uncompressed digest = its diff_id) and
 * writes the config; returns the manifest to store once the whole archive is good. */
async function buildImage(store: ContentStore, config: Entry, layers: Entry[], tags: string[]) {
  if (config.size > MAX_JSON) throw invalid('image config too large');
  let cfg;
  try {
    cfg = imageConfigSchema.parse(JSON.parse(store.readBlob(config.digest).toString('utf8')));
  } catch (err) {
    throw invalid(`image config is not valid: ${(err as Error).message.split('\n')[0]}`);
  }
  const diffIds = cfg.rootfs.diff_ids;
  if (diffIds.length !== layers.length) throw invalid(`image has ${layers.length} layers but its config lists ${diffIds.length}`);
  const descriptors: Descriptor[] = [];
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    let mediaType: string = MediaType.ociLayer;
    if (layer.digest !== diffIds[i]) {
      // A compressed layer (OCI layouts usually gzip): its content must still be the diff_id.
      const hash = createHash('sha256');
      await pipeline(await maybeDecompress(fs.createReadStream(store.blobPath(layer.digest))), async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) hash.update(c);
      });
      if (`sha256:${hash.digest('hex')}` !== diffIds[i]) throw invalid(`layer ${i + 1} does not match the image config (diff_id ${diffIds[i]})`);
      mediaType = MediaType.ociLayerGzip;
    }
    descriptors.push({ mediaType, digest: layer.digest, size: layer.size });
  }
  const tagsOk = tags.map((t) => familiarName(parseReference(t)));
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size }, layers: descriptors }),
  );
  return { manifest, configDigest: config.digest, tags: tagsOk };
}
