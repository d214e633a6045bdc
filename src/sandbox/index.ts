/**
 * The sandbox library: VMs with a guest agent, container roots and processes,
 * usable without hyperboxd (the containerd shim builds on it; the daemon's
 * engine uses the same pieces).
 *
 *   const rt = await openRuntime({ stateDir: '/var/lib/myshim' });
 *   const sb = await rt.start({ rootfs: '/path/to/rootfs', hostname: 'demo' });
 *   const p = await sb.exec({ root: ROOT_NAME, args: ['echo', 'hi'], env: [], cwd: '/', user: '', tty: false, stdin: false });
 *   p.on('stdout', (b) => process.stdout.write(b)); p.on('exit', () => sb.release()); p.release();
 */
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, type Logger } from '../common/logger.js';
import { chooseAccelerator, createDriver, locateGuestAssets, parseAccel, type AccelDecision, type GuestShape, type VmDriver } from '../vm/index.js';
import { startSandbox, type Sandbox, type SandboxOptions } from './sandbox.js';

export { ROOT_NAME, Sandbox, startSandbox, type SandboxOptions, type StartInfo } from './sandbox.js';
export { adoptSandbox, adoptVm, StalledVm, VmStalledError } from './adopt.js';
export { bindRoot, unbindRoot } from './roots.js';
export type { ExitStatus, GuestProcess, MountOptions, ProcessSpec, RootLimits } from '../agent/connection.js';
export type { GuestStats } from '../agent/stats.js';

export interface RuntimeOptions {
  /** Directory for templates, run directories and the accelerator probe's verdict. */
  stateDir: string;
  /** 'auto' (default) proves KVM by booting a guest, else TCG. */
  accel?: string;
  kernel?: string;
  initrd?: string;
  /** Guest memory when a start does not say (MiB). */
  defaultMemoryMiB?: number;
  logger?: Logger;
}

export interface RuntimeStart extends Omit<SandboxOptions, 'driver' | 'shape' | 'runDir' | 'bootTimeoutMs' | 'net'> {
  memoryMiB?: number;
  cpus?: number;
  /** Defaults to a fresh directory under the runtime's state. */
  runDir?: string;
  net?: SandboxOptions['net'];
  bootTimeoutMs?: number;
}

export class SandboxRuntime {
  private seq = 0;
  constructor(
    readonly driver: VmDriver,
    readonly accel: AccelDecision,
    private readonly opts: RuntimeOptions,
  ) {}

  /** The guest shape for this much memory and these vCPUs. */
  shape(memoryMiB = this.opts.defaultMemoryMiB ?? 512, cpus = 1): GuestShape {
    return { assets: locateGuestAssets({ kernel: this.opts.kernel, initrd: this.opts.initrd }), accel: this.accel.accel, memoryMiB, cpus };
  }

  /** Boots (or clones) a sandbox with ROOTFS mounted as its root. */
  start(req: RuntimeStart): Promise<Sandbox> {
    const runDir = req.runDir ?? path.join(this.opts.stateDir, 'run', `${process.pid.toString(36)}-${(this.seq++).toString(36)}`);
    return startSandbox({
      clone: true,
      ...req,
      driver: this.driver,
      shape: this.shape(req.memoryMiB, req.cpus),
      runDir,
      net: req.net ?? { forwards: [] },
      bootTimeoutMs: req.bootTimeoutMs ?? (this.accel.accel === 'kvm' ? 10_000 : 30_000),
    });
  }
}

export async function openRuntime(opts: RuntimeOptions): Promise<SandboxRuntime> {
  fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  const logger = opts.logger ?? createLogger('warn');
  const assets = locateGuestAssets({ kernel: opts.kernel, initrd: opts.initrd });
  const accel = await chooseAccelerator({ requested: parseAccel(opts.accel), assets, cacheDir: opts.stateDir });
  const driver = createDriver({ templateDir: path.join(opts.stateDir, 'templates'), runRoot: path.join(opts.stateDir, 'run'), logger });
  return new SandboxRuntime(driver, accel, opts);
}
