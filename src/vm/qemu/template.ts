/**
 * Templates and instant clones (see docs in README "Instant clone").
 *
 * A template is a guest booted once to the agent's HELLO, with its RAM in a file
 * (share=on), then paused and its *device* state saved with QEMU's migration
 * (`x-ignore-shared`: the RAM file itself is the memory image, so the state is
 * tens of KB). A clone starts QEMU with the same machine and device line, maps
 * the RAM file privately (share=off: copy-on-write, the template's pages are
 * shared between all clones), and loads the device state with
 * `migrate-incoming`. Backing files (9p path, sockets) are the clone's own.
 *
 * A template is keyed by everything that shapes the guest: kernel and initrd
 * (their fingerprint), QEMU version, accelerator, memory, vCPUs and the device
 * layout. A template whose inputs changed is never used; it is deleted.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AgentConnection } from '../../agent/connection.js';
import type { Logger } from '../../common/logger.js';
import { sparseCopy } from '../../common/published-files.js';
import type { GuestAssets } from '../assets.js';
import type { Accel, GuestShape, NetSpec, RootDisks, TemplateInfo } from '../driver.js';
import { layoutFor } from './args.js';
import { probeGuestClock, type GuestClock } from './guest-clock.js';
import { PREMOUNT_BASE, placeholderDisks } from './disks.js';
import { QemuVm } from './process.js';
import { loadState, saveState } from './migration.js';
import { QmpClient } from './qmp.js';
import { OWNER_FILE, privateDir, sweepOrphanedMemDirs } from './template-mem.js';

export interface Template extends TemplateInfo {
  key: string;
  dir: string;
  memFile: string;
  stateFile: string;
  shape: GuestShape;
  created: string;
  bootMs: number;
  /** The upper disk its guest has mounted (shapes with `premountUpper`): read-only, copied per clone. */
  upperBase?: string;
}

interface TemplateMeta {
  key: string;
  fingerprint: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  qemuVersion: string;
  memFile: string;
  created: string;
  bootMs: number;
  /** How the guest's clock was judged when the template was made (see guest-clock.ts). */
  clock?: string;
}

/** Boots of a template whose guest would tick (no tickless clocksource) before one is kept anyway. */
const TEMPLATE_CLOCK_ATTEMPTS = 3;

/** Thrown inside a build whose guest ticks: the build is discarded and booted again. */
class TickingGuest extends Error {}


export class TemplateStore {
  private inflight = new Map<string, Promise<Template>>();
  /** Template guests booting now: stopped by `abortBuilds` (daemon shutdown). */
  private readonly building = new Set<QemuVm>();
  private aborted = false;
  private readonly memDir: string;

  constructor(
    readonly dir: string,
    private readonly qemuVersion: string,
    private readonly logger: Logger,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    // Guest RAM images live in shared memory (tmpfs), one folder per data root.
    const tag = createHash('sha256').update(dir).digest('hex').slice(0, 12);
    this.memDir = fs.existsSync('/dev/shm') ? `/dev/shm/hyperbox-${tag}` : path.join(dir, 'mem');
    if (this.memDir.startsWith('/dev/shm/')) sweepOrphanedMemDirs(logger);
  }

  /** Stops template guests still booting (their half-made templates are dropped). */
  async abortBuilds(): Promise<void> {
    this.aborted = true;
    const vms = [...this.building];
    for (const vm of vms) vm.stop();
    await Promise.all(vms.map((vm) => vm.waitExit()));
  }

  /** RAM images in this store's directory that no template uses and no build is writing. */
  private sweepUnusedMemFiles(): void {
    const used = new Set(this.list().map((m) => path.basename(m.memFile)));
    let names: string[];
    try {
      names = fs.readdirSync(this.memDir);
    } catch {
      return; // not made yet
    }
    for (const n of names) {
      if (n === OWNER_FILE || used.has(n) || !n.endsWith('.mem')) continue;
      // A build in progress (this or another process) has its private folder.
      if (fs.existsSync(path.join(this.dir, `.${n.replace(/\.mem$/, '')}`))) continue;
      fs.rmSync(path.join(this.memDir, n), { force: true });
      this.logger.info(`removed an unused template memory image ${n}`);
    }
  }

  keyOf(shape: GuestShape): string {
    return createHash('sha256')
      .update(JSON.stringify([layoutFor(shape), shape.assets.fingerprint, this.qemuVersion, shape.accel, shape.memoryMiB, shape.cpus, ...premountKey(shape)]))
      .digest('hex')
      .slice(0, 16);
  }

  private readMeta(key: string): TemplateMeta | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, key, 'meta.json'), 'utf8')) as TemplateMeta;
    } catch {
      return undefined;
    }
  }

  list(): TemplateMeta[] {
    return fs
      .readdirSync(this.dir)
      .filter((k) => !k.startsWith('.'))
      .map((k) => this.readMeta(k))
      .filter((m): m is TemplateMeta => !!m && fs.existsSync(m.memFile));
  }

  remove(key: string): boolean {
    // Keys come from clients (`template rm`): only a key's own shape, never a path.
    if (!/^[0-9a-f]{16}$/.test(key)) return false;
    const meta = this.readMeta(key);
    if (meta) fs.rmSync(meta.memFile, { force: true });
    const existed = fs.existsSync(path.join(this.dir, key));
    fs.rmSync(path.join(this.dir, key), { recursive: true, force: true });
    return existed;
  }

  /** Deletes templates built from other guest assets or another QEMU (and RAM images nothing uses). */
  removeStale(current: GuestAssets): string[] {
    this.sweepUnusedMemFiles();
    const removed: string[] = [];
    for (const k of fs.readdirSync(this.dir)) {
      if (k.startsWith('.')) continue; // another process's build in progress
      const meta = this.readMeta(k);
      if (!meta || meta.fingerprint !== current.fingerprint || meta.qemuVersion !== this.qemuVersion || !fs.existsSync(meta.memFile)) {
        this.remove(k);
        removed.push(k);
      }
    }
    return removed;
  }

  /** The template for a shape, created (once, even if asked concurrently) if missing. */
  ensure(shape: GuestShape): Promise<Template> {
    const key = this.keyOf(shape);
    const meta = this.readMeta(key);
    const complete = (f: string) => fs.existsSync(path.join(this.dir, key, f));
    if (meta && fs.existsSync(meta.memFile) && complete('state') && (!premountKey(shape).length || complete(PREMOUNT_BASE))) {
      return Promise.resolve(this.toTemplate(meta, shape));
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.create(key, shape).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private toTemplate(meta: TemplateMeta, shape: GuestShape): Template {
    const dir = path.join(this.dir, meta.key);
    const upperBase = premountKey(shape).length ? path.join(dir, PREMOUNT_BASE) : undefined;
    return { key: meta.key, dir, memFile: meta.memFile, stateFile: path.join(dir, 'state'), shape, accel: shape.accel, memoryMiB: shape.memoryMiB, cpus: shape.cpus, created: meta.created, bootMs: meta.bootMs, upperBase };
  }

  /**
   * Boots a template and saves it. Several processes may share a template
   * directory (daemons, the sandbox library): each builds in a private
   * `.<key>.<random>` folder with its own RAM file and publishes it with one
   * rename; if another process published first, its template is used and this
   * one is thrown away.
   */
  private async create(key: string, shape: GuestShape): Promise<Template> {
    // An existing but unusable template (ensure() found it incomplete) goes.
    if (fs.existsSync(path.join(this.dir, key))) this.remove(key);
    for (let attempt = 1; ; attempt++) {
      if (this.aborted) throw new Error('cannot create template: the daemon is stopping');
      const made = await this.build(key, shape, attempt);
      if (made) return made;
    }
  }

  /**
   * One boot of a template. Its guest's clock is checked before the state is
   * saved: a guest that would tick while idle (no tickless clocksource) is
   * discarded (undefined: boot again), unless this was the last attempt.
   */
  private async build(key: string, shape: GuestShape, attempt: number): Promise<Template | undefined> {
    const final = path.join(this.dir, key);
    const build = `${key}.${randomBytes(4).toString('hex')}`;
    const dir = path.join(this.dir, `.${build}`);
    const runDir = path.join(dir, 'run');
    const placeholder = path.join(dir, 'placeholder');
    privateDir(this.memDir);
    fs.writeFileSync(path.join(this.memDir, OWNER_FILE), this.dir);
    fs.mkdirSync(placeholder, { recursive: true });
    const memFile = path.join(this.memDir, `${build}.mem`);
    const t0 = Date.now();
    const layout = layoutFor(shape);
    // A pre-mounted upper: the template's own copy of the blank, which its guest mounts below.
    const upperBase = premountKey(shape).length ? path.join(dir, PREMOUNT_BASE) : undefined;
    if (upperBase) await sparseCopy(shape.premountUpper!, upperBase);
    const vm = QemuVm.launch({
      runDir,
      shape,
      sharePaths: layout.shares.length ? [placeholder] : [],
      memoryFile: { path: memFile, shared: true },
      disks: layout.disks?.length ? placeholderDisks(dir, upperBase) : undefined,
    });
    this.building.add(vm);
    try {
      const agent = await AgentConnection.connect(vm.controlSocket, { timeoutMs: 60_000 });
      const bootMs = Date.now() - t0;
      const qmp = await QmpClient.connect(vm.paths.qmp);
      const clock = await probeGuestClock(qmp, shape.cpus, vm.paths.console);
      if (!clock.tickless) this.judgeTicking(key, clock, attempt);
      // Mounted (and synced) now, so the snapshot's memory and the disk file agree; the file
      // is never written again (read-only below), each clone gets a copy of it.
      if (upperBase) await agent.premountUpper(layout.disks!.find((d) => d.role === 'upper')!.serial);
      await qmp.execute('stop');
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
      const tmp = path.join(dir, 'state.tmp');
      await saveState(qmp, path.join(runDir, 'mig.sock'), tmp, 30_000);
      agent.close();
      await qmp.execute('quit').catch(() => undefined);
      qmp.close();
      await vm.waitExit();
      if (upperBase) fs.chmodSync(upperBase, 0o400);
      fs.renameSync(tmp, path.join(dir, 'state'));
      const meta: TemplateMeta = {
        key,
        fingerprint: shape.assets.fingerprint,
        accel: shape.accel,
        memoryMiB: shape.memoryMiB,
        cpus: shape.cpus,
        qemuVersion: this.qemuVersion,
        memFile,
        created: new Date().toISOString(),
        bootMs,
        clock: clock.summary,
      };
      fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta, null, 1));
      fs.rmSync(runDir, { recursive: true, force: true });
      try {
        fs.renameSync(dir, final);
      } catch (err) {
        // Another process published this template first: use theirs.
        fs.rmSync(dir, { recursive: true, force: true });
        fs.rmSync(memFile, { force: true });
        const theirs = this.readMeta(key);
        if (!theirs) throw err;
        return this.toTemplate(theirs, shape);
      }
      this.logger.info(`template ${key} ready (${shape.memoryMiB} MiB, ${shape.cpus} vCPU, ${shape.accel}; guest booted in ${bootMs} ms; ${clock.summary})`);
      return this.toTemplate(meta, shape);
    } catch (err) {
      vm.stop();
      await vm.waitExit();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(memFile, { force: true });
      if (err instanceof TickingGuest) return undefined;
      throw new Error(`cannot create template: ${(err as Error).message}; ${vm.diagnostics(300)}`);
    } finally {
      this.building.delete(vm);
    }
  }

  /** A template guest with no tickless clock: thrown away (TickingGuest) while attempts remain, else kept with a warning. */
  private judgeTicking(key: string, clock: GuestClock, attempt: number): void {
    const what = `template ${key}: the guest has no tickless clock (${clock.summary}), so its clones would take a timer interrupt 100 times a second while idle`;
    if (attempt < TEMPLATE_CLOCK_ATTEMPTS) {
      this.logger.warn(`${what}; booting it again (attempt ${attempt + 1} of ${TEMPLATE_CLOCK_ATTEMPTS})`);
      throw new TickingGuest(what);
    }
    this.logger.warn(`${what}; kept after ${attempt} boots (the host may be too busy for the guest to calibrate its clock)`);
  }
}

/** What a shape's pre-mounted upper adds to its template key: the blank's name (its size and format), if any. */
function premountKey(shape: GuestShape): string[] {
  return shape.premountUpper && layoutFor(shape).disks ? [path.basename(shape.premountUpper)] : [];
}

/**
 * Starts a clone of a template: QEMU with the template's machine, private RAM
 * over its file, and the device state loaded from the template. Resolves once
 * the clone runs (or stays paused, if `paused`).
 */
export async function startClone(
  template: Template,
  opts: { runDir: string; rootPath: string; paused?: boolean; net?: NetSpec; disks?: RootDisks; readOnlyDir?: string },
): Promise<QemuVm> {
  checkStateFile(template);
  // A template's pre-mounted upper is in its memory: a clone's upper disk must be a copy of exactly that file.
  if (!!template.upperBase !== !!opts.disks?.premountedFrom || (template.upperBase && opts.disks?.premountedFrom !== template.key)) {
    throw new Error(`the upper disk is not a copy of template ${template.key}'s pre-mounted one`);
  }
  // Templates and clones have the same device line; a template's share was a placeholder.
  const vm = QemuVm.launch({
    runDir: opts.runDir,
    shape: template.shape,
    sharePaths: layoutFor(template.shape).shares.length ? [opts.rootPath] : [],
    memoryFile: { path: template.memFile, shared: false },
    incoming: true,
    net: opts.net,
    disks: opts.disks,
    readOnlyDir: opts.readOnlyDir,
  });
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(vm.paths.qmp, 10_000);
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    // No self-announce after the restore: QEMU would have the guest broadcast gratuitous
    // ARPs (virtio-net GUEST_ANNOUNCE) for a second, waking every VM on its bridge, so
    // each start cost O(running VMs) (300 idle clones: starts 0.35 -> 2.5 s). A clone
    // has not moved; the bridge learns its MAC from its first packet.
    await qmp.execute('migrate-set-parameters', { 'announce-rounds': 0 });
    await loadState(qmp, path.join(opts.runDir, 'mig.sock'), template.stateFile, 10_000);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const st = (await qmp.execute('query-status', undefined, Math.max(100, deadline - Date.now()))) as { status: string };
      if (st.status === 'paused' || st.status === 'running') break;
      if (st.status === 'inmigrate' || st.status === 'prelaunch') {
        if (Date.now() > deadline) throw new Error('incoming migration timed out');
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      throw new Error(`clone is in state ${st.status}`);
    }
    if (!opts.paused) {
      await qmp.execute('cont');
      vm.markState('running');
    }
    qmp.close();
    return vm;
  } catch (err) {
    qmp?.close();
    vm.stop();
    throw new Error(`clone restore failed: ${(err as Error).message}; ${vm.diagnostics(300)}`);
  }
}

/** The template cannot be used (corrupt or missing files): it should be rebuilt. */
export class TemplateCorruptError extends Error {}

/** QEMU may hang on a bad migration stream: check the magic ("QEVM") first. */
function checkStateFile(template: Template): void {
  const head = Buffer.alloc(4);
  try {
    const fd = fs.openSync(template.stateFile, 'r');
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw new TemplateCorruptError(`template ${template.key} state unreadable: ${(err as Error).message}`);
  }
  if (head.toString('latin1') !== 'QEVM') throw new TemplateCorruptError(`template ${template.key} has a corrupt device state file`);
  if (!fs.existsSync(template.memFile)) throw new TemplateCorruptError(`template ${template.key} lost its memory image`);
}

export function newRunId(): string {
  return randomBytes(6).toString('hex');
}

