/**
 * Named volumes ("local" driver): a directory `<data-root>/volumes/<name>/_data`
 * plus `meta.json`. Containers see a volume through a bind mount of `_data` onto
 * their root on the host (see storage.ts), so a volume costs no copy and outlives
 * the containers that use it until it is removed.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { treeSize } from '../common/tree-size.js';
import { conflict, invalid, notFound } from '../common/errors.js';

export const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export interface VolumeMeta {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Options: Record<string, string>;
  Scope: 'local';
  /** Made for one container by `-v /path` (removed with it by `rm -v` / `--rm`). */
  Anonymous?: boolean;
}

export class VolumeStore {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private metaFile(name: string): string {
    return path.join(this.dir, name, 'meta.json');
  }

  dataPath(name: string): string {
    return path.join(this.dir, name, '_data');
  }

  exists(name: string): boolean {
    return VOLUME_NAME_RE.test(name) && fs.existsSync(this.metaFile(name));
  }

  get(name: string): VolumeMeta {
    if (!VOLUME_NAME_RE.test(name)) throw notFound(`get ${name}: no such volume`);
    try {
      return JSON.parse(fs.readFileSync(this.metaFile(name), 'utf8')) as VolumeMeta;
    } catch {
      throw notFound(`get ${name}: no such volume`);
    }
  }

  list(): VolumeMeta[] {
    const out: VolumeMeta[] = [];
    for (const n of fs.readdirSync(this.dir)) {
      try {
        out.push(this.get(n));
      } catch {
        /* half-made or foreign directory */
      }
    }
    return out.sort((a, b) => a.Name.localeCompare(b.Name));
  }

  /** Creates a volume (an existing one with that name is returned as is, as Docker does). */
  create(opts: { name?: string; labels?: Record<string, string>; driver?: string; options?: Record<string, string>; anonymous?: boolean } = {}): VolumeMeta {
    if (opts.driver && opts.driver !== 'local') throw invalid(`volume driver "${opts.driver}" is not supported by hyperbox (only "local")`);
    if (opts.options && Object.keys(opts.options).length) throw invalid('driver options are not supported by hyperbox\'s local volumes');
    const name = opts.name || randomBytes(32).toString('hex');
    if (!VOLUME_NAME_RE.test(name)) {
      throw invalid(`create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
    }
    if (this.exists(name)) return this.get(name);
    const meta: VolumeMeta = {
      Name: name,
      Driver: 'local',
      Mountpoint: this.dataPath(name),
      CreatedAt: new Date().toISOString(),
      Labels: opts.labels ?? {},
      Options: {},
      Scope: 'local',
      ...(opts.anonymous ? { Anonymous: true } : {}),
    };
    fs.mkdirSync(meta.Mountpoint, { recursive: true, mode: 0o755 });
    const tmp = `${this.metaFile(name)}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(meta, null, 1));
    fs.renameSync(tmp, this.metaFile(name));
    return meta;
  }

  /** Removes a volume and its data; `users` are the containers that reference it. */
  remove(name: string, users: string[]): void {
    this.get(name);
    if (users.length) throw conflict(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    // Never follow anything out of the volume directory: rmSync does not follow symlinks.
    fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
  }

  /** Size of a volume's data in bytes (for `system df`-like answers; best effort). */
  size(name: string): number {
    try {
      return treeSize(this.dataPath(name));
    } catch {
      return -1; // unreadable: unknown, as Docker's -1
    }
  }

}
