/**
 * Pod operations that involve the pod's containers: start, stop and remove a
 * pod with its members, and what happens when a member leaves. The pod's VM
 * and share are pods.ts's.
 */
import { conflict } from '../common/errors.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import type { Lifecycle } from './lifecycle.js';
import type { Pod } from './pods.js';
import type { ContainerStore } from './removal.js';

export class PodService {
  constructor(
    private readonly ctx: EngineContext,
    private readonly lifecycle: Lifecycle,
    private readonly containers: ContainerStore,
  ) {}

  list(): Pod[] {
    return this.ctx.pods.list();
  }

  get(idOrName: string): Pod {
    return this.ctx.pods.get(idOrName);
  }

  create(opts: Parameters<EngineContext['pods']['create']>[0]): Pod {
    return this.ctx.pods.create(opts);
  }

  members(pod: Pod): Container[] {
    return this.ctx.registry.podMembers(pod.id);
  }

  /** A container left its pod: unbind its root; the last one out stops the VM. */
  leave(podId: string, containerId: string): void {
    let pod: Pod;
    try {
      pod = this.ctx.pods.get(podId);
    } catch {
      return; // the pod went first (pod rm)
    }
    this.ctx.pods.detach(pod, containerId);
    if (this.members(pod).length === 0) this.ctx.pods.stopVm(pod);
  }

  async start(idOrName: string): Promise<void> {
    const pod = this.ctx.pods.get(idOrName);
    await this.ctx.pods.ensureVm(pod);
    for (const c of this.members(pod).reverse()) if (!c.running && c.lock.idle) await this.lifecycle.start(c.id);
  }

  async stop(idOrName: string, timeout?: number): Promise<void> {
    const pod = this.ctx.pods.get(idOrName);
    await Promise.all(
      this.members(pod)
        .filter((c) => c.running)
        .map((c) => this.lifecycle.stop(c.id, { timeout }).catch((err: Error) => this.ctx.logger.debug(`pod ${pod.name}: stop ${c.shortName}: ${err.message}`))),
    );
    this.ctx.pods.stopVm(pod);
  }

  async remove(idOrName: string, force: boolean): Promise<string[]> {
    const pod = this.ctx.pods.get(idOrName);
    const members = this.members(pod);
    if (!force && members.some((c) => c.running)) throw conflict(`pod ${pod.name} has running containers: stop it first or use --force`);
    for (const c of members) await this.containers.remove(c.id, { force: true, volumes: true });
    this.ctx.pods.remove(pod);
    return members.map((c) => c.id);
  }
}
