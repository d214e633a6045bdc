/**
 * The QEMU implementation of VmDriver: `microvm` guests (./args.ts), templates
 * and instant clones (./template.ts), the warm pool (./pool.ts), QMP for pause
 * and resume (./qmp.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { BuiltinNetwork, DeviceLayout, GuestShape, IncomingRequest, IncomingVm, LaunchRequest, PoolNetProvider, VmDriver, VmHandle, WarmVm } from '../driver.js';
import { layoutFor, QEMU_BINARY, QEMU_LAYOUT, USER_NET_INFO, vmPaths } from './args.js';
import { sweepEmptyCgroups } from './cgroup.js';
import { jailUnavailable, releaseJail } from './jail.js';
import { hostAddress, PASST } from './passt.js';
import { ClonePool } from './pool.js';
import { copyPremountBase } from './disks.js';
import { findQemu, QemuVm } from './process.js';
import { finishIncoming, serveIncoming } from './live-migration.js';
import { startClone, TemplateCorruptError, TemplateStore } from './template.js';

export interface QemuDriverOptions {
  /** Where templates (device state, metadata) are kept. */
  templateDir: string;
  /** Where warm pool VMs get their run directories. */
  runRoot: string;
  /** Warm pool VMs per shape (0: no pool). */
  poolSize?: number;
  logger: Logger;
}

/** QEMU's version ("7.2.19"); throws a clear error when QEMU is missing. */
export function qemuVersion(): string {
  try {
    const out = execFileSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
    return /version (\S+)/.exec(out)?.[1] ?? 'unknown';
  } catch {
    throw new Error(`${QEMU_BINARY} not found: run 'npm run setup' (installs qemu-system-x86)`);
  }
}

export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  readonly layout = QEMU_LAYOUT;
  /** With passt, the gateway is not the host: the host is reached at its own address. */
  readonly builtinNetwork: BuiltinNetwork = PASST ? { ...USER_NET_INFO, hostGateway: hostAddress() } : USER_NET_INFO;
  readonly templates: TemplateStore;
  private readonly pool: ClonePool | undefined;

  constructor(
    readonly version: string,
    opts: QemuDriverOptions,
  ) {
    sweepEmptyCgroups();
    const unjailed = jailUnavailable();
    if (unjailed && process.getuid?.() === 0) opts.logger.warn(`QEMU jail: ${unjailed}`);
    this.templates = new TemplateStore(opts.templateDir, version, opts.logger);
    this.pool = opts.poolSize ? new ClonePool(this.templates, opts.runRoot, opts.poolSize, opts.logger) : undefined;
  }

  layoutFor(shape: GuestShape): DeviceLayout {
    return layoutFor(shape);
  }

  launch(req: LaunchRequest): VmHandle {
    const shares = layoutFor(req.shape).shares.length ? [req.rootDir] : [];
    return QemuVm.launch({ runDir: req.runDir, shape: req.shape, sharePaths: shares, net: req.net, disks: req.disks });
  }

  async clone(req: LaunchRequest & { paused?: boolean }): Promise<VmHandle> {
    const template = await this.templates.ensure(req.shape);
    try {
      return await startClone(template, { runDir: req.runDir, rootPath: req.rootDir, net: req.net, paused: req.paused, disks: req.disks });
    } catch (err) {
      // A broken template is dropped, so the next clone builds a good one.
      if (err instanceof TemplateCorruptError) this.templates.remove(template.key);
      throw err;
    }
  }

  async launchIncoming(req: IncomingRequest): Promise<IncomingVm> {
    if (layoutFor(req.shape).shares.length) throw new Error('a VM with a shared directory cannot migrate');
    const vm = QemuVm.launch({ runDir: req.runDir, shape: req.shape, sharePaths: [], net: req.net, disks: req.disks, incoming: true, startPaused: true, ramBackend: req.ramBackend });
    const sockets = { ram: path.join(req.runDir, 'in-ram.sock'), disk: path.join(req.runDir, 'in-disk.sock') };
    const qmp = (c: string, a?: Record<string, unknown>) => vm.qmp(c, a);
    try {
      await serveIncoming(qmp, sockets);
    } catch (err) {
      vm.stop();
      throw new Error(`the incoming VM did not start: ${(err as Error).message}; ${vm.diagnostics(300)}`);
    }
    return { vm, sockets, finish: (timeoutMs) => finishIncoming(qmp, timeoutMs) };
  }

  async copyPremountedUpper(shape: GuestShape, dest: string): Promise<string> {
    const template = await this.templates.ensure(shape);
    if (!template.upperBase) throw new Error(`template ${template.key} has no pre-mounted upper disk`);
    await copyPremountBase(template.upperBase, dest);
    return template.key;
  }

  /**
   * Pool VMs share an empty directory for a root bound later, or (roots on
   * disks) get their disks when taken, and binds under their share if the
   * shape has one. A shape's pool fills when the daemon asks (its default
   * shape, at start) or when a start first asks it for a VM.
   */
  takeWarm(shape: GuestShape, kind: 'tap' | 'builtin'): WarmVm | undefined {
    return this.pool?.take(shape, kind);
  }

  setPoolNet(provider: PoolNetProvider | undefined): void {
    if (this.pool) this.pool.netProvider = provider;
  }

  fillPool(shape: GuestShape): void {
    this.pool?.fill(shape);
  }

  get poolSize(): number {
    return this.pool?.size ?? 0;
  }

  get poolReady(): number {
    return this.pool?.readyCount ?? 0;
  }

  get poolShapes(): number {
    return this.pool?.shapeCount ?? 0;
  }

  async drainPool(): Promise<void> {
    await this.pool?.drain();
  }

  async close(): Promise<void> {
    await Promise.all([this.drainPool(), this.templates.abortBuilds()]);
  }

  adopt(pid: number, runDir: string): VmHandle | undefined {
    return QemuVm.adopt(pid, runDir);
  }

  isLive(pid: number, runDir: string): boolean {
    return findQemu(pid, runDir) !== undefined;
  }

  releaseRunDir(runDir: string): void {
    releaseJail(path.resolve(runDir));
  }

  recordedPid(runDir: string): number | undefined {
    try {
      const pid = Number(fs.readFileSync(vmPaths(path.resolve(runDir)).pidFile, 'utf8'));
      // The file names the process started: QEMU, or its jail's monitor (then QEMU is its child).
      return Number.isInteger(pid) && pid > 0 ? (findQemu(pid, path.resolve(runDir)) ?? pid) : undefined;
    } catch {
      return undefined; // no VM was started there
    }
  }
}
