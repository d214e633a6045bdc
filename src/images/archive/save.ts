/**
 * `save`: images as one tar in Docker 25+'s form, which is at once a
 * docker-archive (manifest.json, repositories) and an OCI image layout
 * (oci-layout, index.json, blobs/). Layers go in uncompressed, named by their
 * diff_id, as both formats expect; a layer stored gzip'd (pulled) is
 * decompressed to a temporary file first, since a tar entry needs its size.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { invalid } from '../../common/errors.js';
import { maybeDecompress } from '../layer.js';
import { familiarName, formatReference, parseReference } from '../reference.js';
import { MediaType, type ContentStore, type Image } from '../store.js';

export interface SaveRequest {
  image: Image;
  /** The names asked for that belong to this image (tags to record). */
  tags: string[];
}

export function saveImages(store: ContentStore, requests: SaveRequest[], tmpRoot = os.tmpdir()): Readable {
  const pack = tar.pack();
  const tmp = fs.mkdtempSync(path.join(tmpRoot, 'hyperbox-save-'));
  const written = new Set<string>();
  /** Uncompressed size of each layer written, by diff_id. */
  const sizes = new Map<string, number>();

  const addBuffer = (name: string, data: Buffer) =>
    new Promise<void>((resolve, reject) => pack.entry({ name, mode: 0o644, mtime: new Date(0) }, data, (err) => (err ? reject(err) : resolve())));

  const addFile = async (name: string, file: string): Promise<number> => {
    const size = fs.statSync(file).size;
    await pipeline(fs.createReadStream(file), pack.entry({ name, size, mode: 0o644, mtime: new Date(0) }));
    return size;
  };

  /** Writes one layer as blobs/sha256/<diffid>, uncompressed; checks the diff_id. */
  const addLayer = async (diffId: string, stored: string): Promise<void> => {
    const name = `blobs/sha256/${diffId.slice(7)}`;
    if (written.has(name)) return;
    written.add(name);
    if (stored === diffId) {
      sizes.set(diffId, await addFile(name, store.blobPath(stored)));
      return;
    }
    const plain = path.join(tmp, diffId.slice(7));
    const hash = createHash('sha256');
    await pipeline(await maybeDecompress(fs.createReadStream(store.blobPath(stored))), async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        hash.update(c);
        yield c;
      }
    }, fs.createWriteStream(plain));
    if (`sha256:${hash.digest('hex')}` !== diffId) throw invalid(`layer ${stored} does not match its diff_id ${diffId}`);
    sizes.set(diffId, await addFile(name, plain));
    fs.rmSync(plain, { force: true });
  };

  void (async () => {
    const manifestJson: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
    const repositories: Record<string, Record<string, string>> = {};
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] as unknown[] };
    try {
      await addBuffer('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
      for (const { image, tags } of requests) {
        const diffIds = image.config.rootfs.diff_ids;
        if (diffIds.length !== image.manifest.layers.length) throw invalid(`image ${image.id} has ${diffIds.length} diff_ids for ${image.manifest.layers.length} layers`);
        const configName = `blobs/sha256/${image.id.slice(7)}`;
        if (!written.has(configName)) {
          written.add(configName);
          await addBuffer(configName, store.readBlob(image.id));
        }
        for (let i = 0; i < diffIds.length; i++) await addLayer(diffIds[i]!, image.manifest.layers[i]!.digest);
        const layers = diffIds.map((d) => ({ mediaType: MediaType.ociLayer, digest: d, size: sizes.get(d) ?? 0 }));
        const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: image.id, size: store.readBlob(image.id).length }, layers }));
        const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
        const manifestName = `blobs/sha256/${manifestDigest.slice(7)}`;
        if (!written.has(manifestName)) {
          written.add(manifestName);
          await addBuffer(manifestName, manifest);
        }
        for (const tag of tags.length ? tags : [undefined]) {
          const ref = tag ? parseReference(tag) : undefined;
          index.manifests.push({
            mediaType: MediaType.ociManifest,
            digest: manifestDigest,
            size: manifest.length,
            ...(ref ? { annotations: { 'io.containerd.image.name': formatReference(ref), 'org.opencontainers.image.ref.name': ref.tag ?? 'latest' } } : {}),
          });
          if (ref) {
            const repo = familiarName({ ...ref, tag: undefined, digest: undefined });
            (repositories[repo] ??= {})[ref.tag ?? 'latest'] = diffIds[diffIds.length - 1]!.slice(7);
          }
        }
        manifestJson.push({ Config: configName, RepoTags: tags.length ? tags.map((t) => familiarName(parseReference(t))) : null, Layers: diffIds.map((d) => `blobs/sha256/${d.slice(7)}`) });
      }
      await addBuffer('index.json', Buffer.from(JSON.stringify(index)));
      await addBuffer('manifest.json', Buffer.from(JSON.stringify(manifestJson)));
      await addBuffer('repositories', Buffer.from(JSON.stringify(repositories)));
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  })();
  return Readable.from(pack as unknown as AsyncIterable<Buffer>);
}
