/**
 * Named volumes as the API asks for them, with Docker's rules about volumes in
 * use (a volume a container references cannot be removed; prune takes only
 * unused ones, anonymous ones unless `all`). The files are volumes.ts's.
 */
import type { EngineContext } from './context.js';
import type { VolumeMeta } from './volumes.js';

export class VolumeService {
  constructor(private readonly ctx: EngineContext) {}

  list(): VolumeMeta[] {
    return this.ctx.volumes.list();
  }

  get(name: string): VolumeMeta {
    return this.ctx.volumes.get(name);
  }

  exists(name: string): boolean {
    return this.ctx.volumes.exists(name);
  }

  create(opts: Parameters<EngineContext['volumes']['create']>[0]): VolumeMeta {
    const v = this.ctx.volumes.create(opts);
    this.ctx.events.publish('volume', 'create', v.Name, { driver: v.Driver });
    return v;
  }

  /** Containers (names) that reference a volume. */
  users(name: string): string[] {
    return this.ctx.registry.volumeUsers(name);
  }

  size(name: string): number {
    return this.ctx.volumes.size(name);
  }

  remove(name: string): void {
    this.ctx.volumes.remove(name, this.users(name));
    this.ctx.events.publish('volume', 'destroy', name, { driver: 'local' });
  }

  /** As Docker >= 23: removes unused anonymous volumes, or every unused volume with `all`. */
  prune(all: boolean): { deleted: string[]; space: number } {
    const deleted: string[] = [];
    let space = 0;
    for (const v of this.list()) {
      if (this.users(v.Name).length || (!all && !v.Anonymous)) continue;
      space += Math.max(0, this.size(v.Name));
      this.remove(v.Name);
      deleted.push(v.Name);
    }
    return { deleted, space };
  }
}
