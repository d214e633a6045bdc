/**
 * Removing and pruning images with Docker's rules: a name is removed, an image
 * goes only when nothing names it and no container uses it, and its blobs are
 * collected from the content store straight away.
 */
import { conflict } from '../common/errors.js';
import { familiarName, parseReference } from '../images/reference.js';
import type { Image } from '../images/store.js';
import type { Engine } from './engine.js';

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

export function removeImage(engine: Engine, name: string, force: boolean): DeleteResponseItem[] {
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

/** `image prune`: dangling images (or, with all, every image no container uses). */
export function pruneImages(engine: Engine, all: boolean): { ImagesDeleted: DeleteResponseItem[]; SpaceReclaimed: number } {
  const out: DeleteResponseItem[] = [];
  for (const img of engine.store.list()) {
    if (engine.registry.imageUser(img.id)) continue;
    if (img.refs.length && !all) continue;
    for (const ref of img.refs) out.push({ Untagged: ref });
    deleteUnused(engine, img, out);
  }
  const { freed } = engine.store.gc();
  return { ImagesDeleted: out, SpaceReclaimed: freed };
}
