/**
 * Image operations as the API asks for them, each with its event: pull and
 * push (then tag), import, tag, save and load, and removing and pruning with
 * Docker's rules (a name is removed; an image goes only when nothing names it
 * and no container uses it, and its blobs are collected straight away).
 */
import os from 'node:os';
import type { Readable } from 'node:stream';
import { conflict, internal, invalid } from '../common/errors.js';
import { loadImages } from '../images/archive/load.js';
import { saveImages, type SaveRequest } from '../images/archive/save.js';
import { importRootfs } from '../images/import.js';
import { familiarName, formatReference, parseReference, type ImageRef } from '../images/reference.js';
import type { RegistryOptions } from '../images/registry/client.js';
import { pullImage, type Progress } from '../images/registry/pull.js';
import { pushImage } from '../images/registry/push.js';
import { inspectDistribution, searchCatalog, type DistributionInspect, type SearchResult } from '../images/registry/inspect.js';
import type { Image } from '../images/store.js';
import type { EngineContext } from './context.js';

type Engine = Pick<EngineContext, 'store' | 'rootfs' | 'events' | 'registry'>;

export type DeleteResponseItem = { Untagged: string } | { Deleted: string };

function isIdReference(img: Image, name: string): boolean {
  const hex = name.replace(/^sha256:/, '');
  return /^[a-f0-9]{6,64}$/.test(hex) && img.id.slice(7).startsWith(hex);
}

/** Forgets an image entirely (every name) once nothing uses it, and frees its files. */
function deleteUnused(engine: Engine, img: Image, out: DeleteResponseItem[]): void {
  for (const same of engine.store.list()) if (same.id === img.id && same.refs.length === 0) engine.store.deleteImage(same.manifestDigest);
  engine.store.deleteImage(img.manifestDigest);
  engine.rootfs.removeImageRootfs(img.id);
  out.push({ Deleted: img.id });
  engine.events.publish('image', 'delete', img.id, { name: img.id });
}

function removeImage(engine: Engine, name: string, force: boolean): DeleteResponseItem[] {
  const img = engine.store.resolve(name);
  const user = engine.registry.imageUser(img.id);
  const byId = isIdReference(img, name);
  const shortId = img.id.slice(7, 19);
  const out: DeleteResponseItem[] = [];

  if (!byId) {
    const ref = familiarName(parseReference(name));
    const last = img.refs.length <= 1;
    if (last && user && !force) {
      throw conflict(`conflict: unable to remove repository reference "${name}" (must force) - container ${user.id.slice(0, 12)} is using its referenced image ${shortId}`);
    }
    engine.store.untag(ref);
    out.push({ Untagged: ref });
    engine.events.publish('image', 'untag', img.id, { name: ref });
    if (last && !user) deleteUnused(engine, img, out);
  } else {
    if (user) {
      const how = user.running ? 'cannot be forced' : 'must be forced';
      if (user.running || !force) throw conflict(`conflict: unable to delete ${shortId} (${how}) - image is being used by ${user.running ? 'running' : 'stopped'} container ${user.id.slice(0, 12)}`);
    }
    if (img.refs.length > 1 && !force) {
      throw conflict(`conflict: unable to delete ${shortId} (must be forced) - image is referenced in multiple repositories`);
    }
    for (const ref of img.refs) {
      engine.store.untag(ref);
      out.push({ Untagged: ref });
      engine.events.publish('image', 'untag', img.id, { name: ref });
    }
    if (!user) deleteUnused(engine, img, out);
    // A stopped container keeps a forced-away image alive, dangling, as Docker does.
    else engine.store.addUntagged(img.manifestDigest);
  }
  if (out.some((o) => 'Deleted' in o)) engine.store.gc();
  return out;
}

/**
 * `image prune`: dangling images (or, with all, every image no container
 * uses). A build's step images are not dangling (Docker's have children):
 * they are the build cache, which `builder prune` and `prune -a` clear.
 */
function pruneImages(engine: Engine, all: boolean): { ImagesDeleted: DeleteResponseItem[]; SpaceReclaimed: number } {
  const out: DeleteResponseItem[] = [];
  for (const img of engine.store.list()) {
    if (engine.registry.imageUser(img.id)) continue;
    if ((img.refs.length || img.intermediate) && !all) continue;
    for (const ref of img.refs) out.push({ Untagged: ref });
    deleteUnused(engine, img, out);
  }
  const { freed } = engine.store.gc();
  return { ImagesDeleted: out, SpaceReclaimed: freed };
}


export class ImageService {
  constructor(private readonly ctx: Engine) {}

  list(): Image[] {
    return this.ctx.store.list();
  }

  resolve(name: string): Image {
    return this.ctx.store.resolve(name);
  }

  /** `pull`: the image, then its name (and repo digest). */
  async pull(ref: ImageRef, opts: RegistryOptions & { platform?: string; progress?: Progress }): Promise<{ repoDigest: string; downloaded: boolean }> {
    const r = await pullImage(this.ctx.store, ref, opts);
    const repo = familiarName({ ...ref, tag: undefined, digest: undefined });
    this.ctx.store.tag(formatReference(ref), r.manifestDigest, undefined, `${repo}@${r.repoDigest}`);
    const name = familiarName(ref);
    this.ctx.events.publish('image', 'pull', name, { name });
    return r;
  }

  /** `push`: the image named by REF, then its repo digest is remembered. */
  async push(ref: ImageRef, opts: RegistryOptions & { progress?: Progress }): Promise<{ digest: string; size: number }> {
    const name = familiarName(ref);
    const image = this.ctx.store.resolve(name);
    const res = await pushImage(this.ctx.store, image, ref, opts);
    this.ctx.store.tag(name, image.manifestDigest, image.manifest.mediaType, `${familiarName({ ...ref, tag: undefined })}@${res.digest}`);
    this.ctx.events.publish('image', 'push', name, { name });
    return res;
  }

  /** `GET /distribution/{name}/json`: the registry's descriptor and platforms for REF, nothing pulled. */
  distributionInspect(ref: ImageRef, opts: RegistryOptions): Promise<DistributionInspect> {
    return inspectDistribution(ref, opts);
  }

  /**
   * `search`: hyperbox has no index of Docker Hub to ask; a term naming a
   * registry (`localhost:5000/name`) searches that registry's catalog.
   */
  search(term: string, limit: number, filters: Record<string, string[]>, opts: RegistryOptions): Promise<SearchResult[]> {
    // dockerd's search filters, checked the same way; a catalog has no stars and no official images.
    for (const k of Object.keys(filters)) if (!['is-automated', 'is-official', 'stars'].includes(k)) throw invalid(`invalid filter '${k}'`);
    let needsMore = false;
    for (const k of ['is-automated', 'is-official']) {
      for (const v of filters[k] ?? []) {
        if (!['true', '1', 'false', '0'].includes(v.toLowerCase())) throw invalid(`invalid filter '${k}=${v}'`);
        needsMore ||= v === 'true' || v === '1';
      }
    }
    for (const v of filters.stars ?? []) {
      if (!/^-?\d+$/.test(v)) throw invalid(`invalid filter 'stars=${v}'`);
      needsMore ||= Number(v) > 0;
    }
    const slash = term.indexOf('/');
    const domain = slash > 0 ? term.slice(0, slash) : '';
    if (!domain || !/[.:]|^localhost$/.test(domain) || domain === 'docker.io' || domain === 'index.docker.io') {
      throw internal(
        `search of Docker Hub is not available: hyperbox has no index to search. Name a registry to search its catalog, e.g. "docker search localhost:5000/${term}"`,
      );
    }
    return needsMore ? Promise.resolve([]) : searchCatalog(domain, term.slice(slash + 1), limit, opts);
  }

  /** `import`: a rootfs tar as a one-layer image. Returns its ID. */
  async import(source: Readable, opts: { ref?: string; changes: string[]; message?: string }): Promise<string> {
    const id = await importRootfs(this.ctx.store, source, opts);
    this.ctx.events.publish('image', 'import', id, { name: opts.ref ?? id });
    return id;
  }

  tag(name: string, repo: string, tag: string): void {
    const img = this.ctx.store.resolve(name);
    this.ctx.store.tag(`${repo}:${tag}`, img.manifestDigest);
    this.ctx.events.publish('image', 'tag', img.id, { name: `${repo}:${tag}` });
  }

  remove(name: string, force: boolean): DeleteResponseItem[] {
    return removeImage(this.ctx, name, force);
  }

  prune(all: boolean): { ImagesDeleted: DeleteResponseItem[]; SpaceReclaimed: number } {
    return pruneImages(this.ctx, all);
  }

  /** `save`: the named images as one archive stream. */
  save(names: string[]): Readable {
    const requests = saveRequests(this.ctx, names);
    for (const r of requests) this.ctx.events.publish('image', 'save', r.image.id, { name: r.tags[0] ?? r.image.id });
    return saveImages(this.ctx.store, requests, os.tmpdir());
  }

  /** `load`: an archive's images; on failure, what it left in the store is collected. */
  async load(source: Readable, log: (line: string) => void): Promise<void> {
    try {
      const loaded = await loadImages(this.ctx.store, source, log);
      for (const l of loaded) this.ctx.events.publish('image', 'load', l.id, { name: l.tags[0] ?? l.id });
    } catch (err) {
      this.ctx.store.gc();
      throw err;
    }
  }
}

/** Groups the requested names by image; names that are references become its tags. */
function saveRequests(engine: Engine, names: string[]): SaveRequest[] {
  const byId = new Map<string, SaveRequest>();
  for (const name of names) {
    const image = engine.store.resolve(name);
    const req = byId.get(image.id) ?? { image, tags: [] };
    byId.set(image.id, req);
    const isId = image.id.slice(7).startsWith(name.replace(/^sha256:/, ''));
    if (!isId) {
      const ref = familiarName(parseReference(name));
      if (!req.tags.includes(ref)) req.tags.push(ref);
    }
  }
  return [...byId.values()];
}
