/**
 * Content store in OCI image-layout form: blobs/sha256/<hex>, index.json naming
 * manifests by reference (annotation org.opencontainers.image.ref.name).
 *
 * Every blob is verified against its digest as it is written; a blob lands under
 * its final name only by rename() after the digest matched, so a crash mid-write
 * leaves a temp file (swept on open), never a half-written blob.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { conflict, invalid, notFound } from '../common/errors.js';
import { familiarName, normalizeReference, parseReference } from './reference.js';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'invalid digest');

export const descriptorSchema = z.object({
  mediaType: z.string(),
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

export const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
});
export type Manifest = z.infer<typeof manifestSchema>;

export const imageConfigSchema = z.object({
  architecture: z.string().default('amd64'),
  os: z.string().default('linux'),
  created: z.string().optional(),
  author: z.string().optional(),
  config: z
    .object({
      Cmd: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Env: z.array(z.string()).nullish(),
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
      ExposedPorts: z.record(z.string(), z.object({})).nullish(),
      StopSignal: z.string().nullish(),
    })
    .passthrough()
    .default({}),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(digestSchema) }),
  history: z.array(z.record(z.string(), z.unknown())).optional(),
}).passthrough();
export type ImageConfig = z.infer<typeof imageConfigSchema>;

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  manifests: z.array(descriptorSchema),
});

export interface Image {
  /** Image ID as Docker shows it: the config digest. */
  id: string;
  manifestDigest: string;
  manifest: Manifest;
  config: ImageConfig;
  refs: string[];
  /** "repo@sha256:..." for each registry this image was pulled from or pushed to. */
  repoDigests: string[];
  /** A build step's image, listed only with `images -a` (as Docker's intermediate images). */
  intermediate?: boolean;
  size: number;
}

const REF_ANNOTATION = 'org.opencontainers.image.ref.name';
const REPO_DIGEST_ANNOTATION = 'io.hyperbox.repo-digest';
const INTERMEDIATE_ANNOTATION = 'io.hyperbox.build-step';

export class ContentStore {
  readonly blobDir: string;
  private readonly indexFile: string;

  constructor(readonly root: string) {
    this.blobDir = path.join(root, 'blobs', 'sha256');
    this.indexFile = path.join(root, 'index.json');
    fs.mkdirSync(this.blobDir, { recursive: true });
    if (!fs.existsSync(path.join(root, 'oci-layout'))) {
      fs.writeFileSync(path.join(root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    for (const f of fs.readdirSync(this.blobDir)) if (f.startsWith('.tmp-')) fs.rmSync(path.join(this.blobDir, f), { force: true });
  }

  blobPath(digest: string): string {
    digestSchema.parse(digest);
    return path.join(this.blobDir, digest.slice(7));
  }

  hasBlob(digest: string): boolean {
    return fs.existsSync(this.blobPath(digest));
  }

  /** Streams a blob into the store, verifying its digest (if given) and size. */
  async putBlob(source: Readable | Buffer, expected?: { digest?: string; size?: number }): Promise<{ digest: string; size: number }> {
    const tmp = path.join(this.blobDir, `.tmp-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        Buffer.isBuffer(source) ? Readable.from([source]) : source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            size += c.length;
            if (expected?.size !== undefined && size > expected.size) throw invalid(`blob larger than its declared size ${expected.size}`);
            yield c;
          }
        },
        // Opened synchronously, so the cleanup below can never run before the file exists.
        fs.createWriteStream('', { fd: fs.openSync(tmp, 'wx', 0o644) }),
      );
      const digest = `sha256:${hash.digest('hex')}`;
      if (expected?.digest && expected.digest !== digest) throw invalid(`digest mismatch: expected ${expected.digest}, got ${digest}`);
      if (expected?.size !== undefined && expected.size !== size) throw invalid(`size mismatch for ${digest}: expected ${expected.size}, got ${size}`);
      fs.renameSync(tmp, this.blobPath(digest));
      return { digest, size };
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Reads a whole (small) blob and checks it against its digest. */
  readBlob(digest: string): Buffer {
    let data: Buffer;
    try {
      data = fs.readFileSync(this.blobPath(digest));
    } catch {
      throw notFound(`blob ${digest} not found in content store`);
    }
    const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (actual !== digest) throw invalid(`content store blob ${digest} is corrupt (hash ${actual})`);
    return data;
  }

  private readIndex(): z.infer<typeof indexSchema> {
    try {
      return indexSchema.parse(JSON.parse(fs.readFileSync(this.indexFile, 'utf8')));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, manifests: [] };
      throw err;
    }
  }

  private writeIndex(index: z.infer<typeof indexSchema>): void {
    const tmp = `${this.indexFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(index, null, 1));
    fs.renameSync(tmp, this.indexFile);
  }

  /** Points REF at a stored manifest. An image that loses its last name this way
   * stays in the index untagged ("<none>:<none>", Docker's dangling image). */
  tag(ref: string, manifestDigest: string, mediaType: string = MediaType.ociManifest, repoDigest?: string): void {
    const manifest: Descriptor = { mediaType, digest: manifestDigest, size: fs.statSync(this.blobPath(manifestDigest)).size };
    const name = normalizeReference(ref);
    const index = this.readIndex();
    const previous = index.manifests.find((m) => m.annotations?.[REF_ANNOTATION] === name);
    index.manifests = index.manifests.filter((m) => m.annotations?.[REF_ANNOTATION] !== name && !(m.digest === manifestDigest && !m.annotations?.[REF_ANNOTATION]));
    index.manifests.push({ ...manifest, annotations: { [REF_ANNOTATION]: name, ...(repoDigest ? { [REPO_DIGEST_ANNOTATION]: repoDigest } : {}) } });
    if (previous && previous.digest !== manifestDigest && !index.manifests.some((m) => m.digest === previous.digest)) {
      index.manifests.push({ mediaType: previous.mediaType, digest: previous.digest, size: previous.size });
    }
    this.writeIndex(index);
  }

  /** Records an image without a name (import or load without a tag; a build's steps as intermediate). */
  addUntagged(manifestDigest: string, mediaType: string = MediaType.ociManifest, opts: { intermediate?: boolean } = {}): void {
    const index = this.readIndex();
    const existing = index.manifests.filter((m) => m.digest === manifestDigest);
    // A build's result that was a step before stops being hidden.
    if (existing.length && (opts.intermediate || existing.some((m) => !m.annotations?.[INTERMEDIATE_ANNOTATION]))) return;
    index.manifests = index.manifests.filter((m) => m.digest !== manifestDigest);
    const annotations = opts.intermediate ? { annotations: { [INTERMEDIATE_ANNOTATION]: 'true' } } : {};
    index.manifests.push({ mediaType, digest: manifestDigest, size: fs.statSync(this.blobPath(manifestDigest)).size, ...annotations });
    this.writeIndex(index);
  }

  /** Removes one name. Returns false if no image had it. */
  untag(ref: string): boolean {
    const name = normalizeReference(ref);
    const index = this.readIndex();
    const before = index.manifests.length;
    index.manifests = index.manifests.filter((m) => m.annotations?.[REF_ANNOTATION] !== name);
    this.writeIndex(index);
    return index.manifests.length !== before;
  }

  /** Drops every index entry of an image (its blobs go at the next gc()). */
  deleteImage(manifestDigest: string): void {
    const index = this.readIndex();
    index.manifests = index.manifests.filter((m) => m.digest !== manifestDigest);
    this.writeIndex(index);
  }

  private leases = 0;

  /**
   * Marks an operation that writes blobs before it names them (pull, load,
   * commit): gc() leaves the store alone while one is running, so it can never
   * collect a blob that is about to be referenced.
   */
  async withLease<T>(fn: () => Promise<T>): Promise<T> {
    this.leases++;
    try {
      return await fn();
    } finally {
      this.leases--;
    }
  }

  /** Deletes blobs no image in the index refers to. Returns bytes freed. */
  gc(): { removed: string[]; freed: number; deferred: boolean } {
    if (this.leases > 0) return { removed: [], freed: 0, deferred: true };
    const live = new Set<string>();
    for (const m of this.readIndex().manifests) {
      live.add(m.digest);
      try {
        const manifest = manifestSchema.parse(JSON.parse(this.readBlob(m.digest).toString('utf8')));
        live.add(manifest.config.digest);
        for (const l of manifest.layers) live.add(l.digest);
      } catch {
        // An unreadable manifest keeps what we cannot see: collect nothing.
        return { removed: [], freed: 0, deferred: true };
      }
    }
    const removed: string[] = [];
    let freed = 0;
    for (const f of fs.readdirSync(this.blobDir)) {
      if (f.startsWith('.tmp-') || live.has(`sha256:${f}`)) continue;
      const p = path.join(this.blobDir, f);
      freed += fs.statSync(p).size;
      fs.rmSync(p, { force: true });
      removed.push(`sha256:${f}`);
    }
    return { removed, freed, deferred: false };
  }

  private load(manifestDigest: string, refs: string[], repoDigests: string[] = []): Image {
    const manifest = manifestSchema.parse(JSON.parse(this.readBlob(manifestDigest).toString('utf8')));
    const config = imageConfigSchema.parse(JSON.parse(this.readBlob(manifest.config.digest).toString('utf8')));
    const size = manifest.layers.reduce((n, l) => n + l.size, 0);
    return { id: manifest.config.digest, manifestDigest, manifest, config, refs, repoDigests, size };
  }

  list(): Image[] {
    const byDigest = new Map<string, { refs: string[]; repoDigests: string[]; intermediate: boolean }>();
    for (const m of this.readIndex().manifests) {
      const entry = byDigest.get(m.digest) ?? { refs: [], repoDigests: [], intermediate: true };
      entry.intermediate &&= !!m.annotations?.[INTERMEDIATE_ANNOTATION];
      const name = m.annotations?.[REF_ANNOTATION];
      if (name) entry.refs.push(familiarName(parseReference(name)));
      const rd = m.annotations?.[REPO_DIGEST_ANNOTATION];
      if (rd && !entry.repoDigests.includes(rd)) entry.repoDigests.push(rd);
      byDigest.set(m.digest, entry);
    }
    return [...byDigest].map(([d, e]) => ({ ...this.load(d, e.refs, e.repoDigests), ...(e.intermediate ? { intermediate: true } : {}) }));
  }

  // ---- where blobs came from (for cross-repository mounts on push) ----------

  private get sourcesFile(): string {
    return path.join(this.root, 'sources.json');
  }

  private readSources(): Record<string, string[]> {
    try {
      return JSON.parse(fs.readFileSync(this.sourcesFile, 'utf8')) as Record<string, string[]>;
    } catch {
      return {};
    }
  }

  /** Notes that these blobs exist in REPO ("registry/path"). */
  recordSource(digests: string[], repo: string): void {
    const sources = this.readSources();
    for (const d of digests) {
      const list = sources[d] ?? [];
      if (!list.includes(repo)) list.push(repo);
      sources[d] = list.slice(-8);
    }
    const tmp = `${this.sourcesFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(sources));
    fs.renameSync(tmp, this.sourcesFile);
  }

  sourcesOf(digest: string): string[] {
    return this.readSources()[digest] ?? [];
  }

  /** Finds an image by reference, full or short ID (config digest) or manifest digest. */
  resolve(nameOrId: string): Image {
    const images = this.list();
    const hex = nameOrId.replace(/^sha256:/, '');
    if (/^[a-f0-9]{6,64}$/.test(hex)) {
      const matches = images.filter((i) => i.id.slice(7).startsWith(hex));
      // One config can be stored under several manifests (pulled gzip'd, imported plain): one image.
      if (new Set(matches.map((i) => i.id)).size === 1) return { ...matches[0]!, refs: matches.flatMap((i) => i.refs) };
      if (matches.length > 1) throw conflict(`ambiguous image id ${nameOrId}`);
    }
    let wanted: string;
    try {
      wanted = familiarName(parseReference(nameOrId));
    } catch {
      throw notFound(`No such image: ${nameOrId}`);
    }
    const img = images.find((i) => i.refs.includes(wanted));
    if (!img) throw notFound(`No such image: ${wanted}`);
    return img;
  }
}
