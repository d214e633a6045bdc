/**
 * What the host ties to one VM's life (a bridge endpoint's port proxies and TAP):
 * let go when the VM's owner releases it, and once the VM has exited. A VM can
 * change owners without being released (a VM adopted after a daemon restart whose
 * agent is attached later, see ./adopt.ts): the new owner takes the hooks over.
 */
import type { VmHandle } from '../vm/index.js';

export class VmTies {
  private readonly releaseHooks: Array<() => void> = [];
  private readonly exitHooks: Array<() => void> = [];
  /** Released (or handed over): hooks added from now on run at once (exit hooks once the VM is gone). */
  protected released = false;
  private successor: VmTies | undefined;

  constructor(readonly vm: VmHandle) {}

  /** Runs FN when the VM is released (after it was told to stop). */
  onRelease(fn: () => void): void {
    if (this.successor) this.successor.onRelease(fn);
    else if (this.released) fn();
    else this.releaseHooks.push(fn);
  }

  /**
   * Runs FN once the VM is released and has exited: for what must not go while
   * QEMU still holds it (deleting a TAP QEMU has open makes `ip link del` wait
   * for it, blocking the daemon meanwhile).
   */
  afterExit(fn: () => void): void {
    if (this.successor) this.successor.afterExit(fn);
    else if (this.released) void this.vm.waitExit().then(fn);
    else this.exitHooks.push(fn);
  }

  /** The release hooks now, the exit hooks once the VM has exited. */
  protected runHooks(): void {
    for (const hook of this.releaseHooks.splice(0)) hook();
    const later = this.exitHooks.splice(0);
    void this.vm.waitExit().then(() => {
      for (const hook of later) hook();
    });
  }

  /** The same VM has a new owner, which takes the hooks over. */
  protected handOver(to: VmTies): void {
    to.releaseHooks.push(...this.releaseHooks.splice(0));
    to.exitHooks.push(...this.exitHooks.splice(0));
    this.successor = to;
    this.released = true;
  }
}
