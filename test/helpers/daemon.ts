/**
 * Test harness: each suite starts its own hyperboxd (own socket, own data root)
 * and drives it through the real `hyperbox` CLI, so tests exercise exactly what
 * users run. VMs boot for real.
 *
 * VM templates are the exception to "own everything": building one boots a guest
 * (seconds, more under TCG), so all test daemons share one template directory
 * (HYPERBOX_TEMPLATE_DIR) that outlives the run. Templates are keyed by guest
 * assets, QEMU version and shape, and stale ones are deleted by the daemon, so a
 * rebuilt kernel or agent is picked up. A test that tampers with templates, or
 * runs other guest assets, passes `ownTemplates`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { removeBridge } from '../../src/engine/net/bridge.js';
import { defaultBridgeName } from '../../src/engine/net/networks.js';
import { waitFor } from './wait.js';

export { holds, until, waitFor } from './wait.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const busyboxTar = path.join(repo, 'build/busybox-rootfs.tar');
const cli = path.join(repo, 'bin/hyperbox');
const daemonBin = path.join(repo, 'bin/hyperboxd');

/**
 * The template cache every test daemon uses unless told otherwise (kept between runs).
 * One per checkout: a daemon deletes templates of other guest assets as stale, so two
 * checkouts with different agents sharing one directory kept rebuilding each other's.
 */
export const sharedTemplateDir =
  process.env.HYPERBOX_TEST_TEMPLATE_DIR ?? path.join(os.tmpdir(), `hyperbox-test-templates-${createHash('sha256').update(repo).digest('hex').slice(0, 8)}`);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestDaemonOptions {
  /** A template directory of its own, under the data root (tests that corrupt or replace templates). */
  ownTemplates?: boolean;
}

/**
 * Live QEMU processes (not their jails' monitors, whose command lines name QEMU
 * too) whose command line contains MATCH, optionally only those started by
 * PARENT (directly or through a jail monitor).
 */
export function qemuProcesses(match: string, parent?: number): number[] {
  const read = (p: string) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  const ppid = (pid: number | string) => Number(read(`/proc/${pid}/stat`).split(') ')[1]?.split(' ')[1] ?? 0);
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => read(`/proc/${e}/comm`).startsWith('qemu-system') && read(`/proc/${e}/stat`).split(') ')[1]?.[0] !== 'Z')
    .filter((e) => read(`/proc/${e}/cmdline`).includes(match))
    .filter((e) => parent === undefined || ppid(e) === parent || ppid(ppid(e)) === parent)
    .map(Number);
}

/** QEMU children of PID whose command line does (or does not) mention DIR. */
function qemuChildren(pid: number | undefined, dir: string, mentions: boolean): number[] {
  if (!pid) return [];
  const all = qemuProcesses('', pid);
  const mentioning = new Set(qemuProcesses(`${dir}/`, pid));
  return all.filter((p) => mentioning.has(p) === mentions);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class TestDaemon {
  /** Daemons of this test process that have not been stopped. */
  private static readonly live = new Set<TestDaemon>();

  readonly host: string;
  readonly dataRoot: string;
  readonly socket: string;
  readonly sharedTemplates: boolean;
  proc: ChildProcess | undefined;
  log = '';

  constructor(
    readonly extraArgs: string[] = [],
    readonly env: NodeJS.ProcessEnv = {},
    opts: TestDaemonOptions = {},
  ) {
    this.dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-'));
    this.socket = path.join(this.dataRoot, 'd.sock');
    this.host = `unix://${this.socket}`;
    // Other guest assets would make the daemon delete the shared templates as stale.
    this.sharedTemplates = !opts.ownTemplates && !env.HYPERBOX_KERNEL && !env.HYPERBOX_INITRD;
  }

  /** Where this daemon keeps its templates (its own folder if the daemon ignores HYPERBOX_TEMPLATE_DIR). */
  get templateDir(): string {
    const own = path.join(this.dataRoot, 'data', 'templates');
    return this.sharedTemplates && !fs.existsSync(own) ? sharedTemplateDir : own;
  }

  async start(): Promise<void> {
    if (this.sharedTemplates) {
      fs.mkdirSync(sharedTemplateDir, { recursive: true });
      // Two daemons must not build the same template at once, and a starting daemon
      // deletes unfinished ones: let another live daemon of this run finish first.
      const others = [...TestDaemon.live].filter((o) => o !== this && o.sharedTemplates);
      await waitFor(() => others.every((o) => qemuChildren(o.proc?.pid, sharedTemplateDir, true).length === 0), {
        what: 'another test daemon to finish building a shared template',
        timeoutMs: 300_000,
        intervalMs: 200,
      });
    }
    TestDaemon.live.add(this);
    // This start's log: after a kill, the previous daemon's "API listen on" must not pass for this one's.
    this.log = '';
    this.proc = spawn(daemonBin, ['-H', this.host, '--data-root', path.join(this.dataRoot, 'data'), '--log-level', 'debug', ...this.extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(this.sharedTemplates ? { HYPERBOX_TEMPLATE_DIR: sharedTemplateDir } : {}), ...this.env },
    });
    // Kept after the test for post-mortems (CI prints where).
    const logDir = path.join(os.tmpdir(), 'hyperbox-test-logs');
    fs.mkdirSync(logDir, { recursive: true });
    const logFile = fs.createWriteStream(path.join(logDir, `${path.basename(this.dataRoot)}.log`), { flags: 'a' });
    const keep = (d: Buffer) => {
      this.log += d;
      logFile.write(d);
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    // Seconds here; a 3x slower CI machine recovering containers while others boot must not hit it.
    const deadline = Date.now() + 120_000;
    while (!this.log.includes('API listen on')) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`hyperboxd exited: ${this.log}`);
      if (Date.now() > deadline) throw new Error(`hyperboxd did not start: ${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async importBusybox(): Promise<void> {
    const r = await this.run(['import', '-c', 'CMD ["sh"]', busyboxTar, 'busybox:latest']);
    if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  }

  /** Warm-pool VMs ready now, of every shape (`info`). */
  async poolReady(): Promise<number> {
    return Number(/^Warm Pool: (\d+) ready/m.exec((await this.run(['info'])).stdout)?.[1] ?? 0);
  }

  /** Waits until READY warm-pool VMs are ready; a timeout says what the daemon logged last. */
  async waitPool(ready: number, timeoutMs = 150_000): Promise<void> {
    await waitFor(async () => (await this.poolReady()) >= ready, { what: `${ready} warm-pool VMs ready`, timeoutMs }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- daemon log tail\n${this.log.split('\n').slice(-30).join('\n')}`);
    });
  }

  /** Runs the hyperbox CLI against this daemon. */
  run(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(cli, args, {
        env: { ...process.env, HYPERBOX_HOST: this.host, ...opts.env },
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d) => (stdout += d));
      child.stderr!.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`hyperbox ${args.join(' ')} timed out; stdout=${stdout} stderr=${stderr}`));
      }, opts.timeoutMs ?? 60_000);
      if (opts.input !== undefined) child.stdin!.end(opts.input);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  /** The same CLI, but spawned for the caller to manage (logs -f and the like). */
  spawnCli(args: string[]): ChildProcess {
    return spawn(cli, args, { env: { ...process.env, HYPERBOX_HOST: this.host }, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Kills the daemon (SIGKILL, as a crash) and waits until it is gone; its VMs live on. */
  /** The daemon's pid (hyperboxd is node running bin/hyperboxd, not a wrapper). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async kill(): Promise<void> {
    await this.terminate('SIGKILL');
  }

  /** Stops the daemon (SIGTERM, or SIGKILL) and starts it again on the same data root. */
  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.terminate(signal);
    await this.start();
  }

  async stop(): Promise<void> {
    await this.terminate('SIGTERM');
    TestDaemon.live.delete(this);
    // A test that failed half-way (or killed its daemon on purpose) may leave VMs: none survive the harness.
    spawnSync('pkill', ['-9', '-f', `qemu-system.*${this.dataRoot}/`]);
    spawnSync('sh', ['-c', `grep -o '${this.dataRoot}[^ ]*' /proc/mounts | sort -r | xargs -r umount -l`]);
    removeDefaultBridge(path.join(this.dataRoot, 'data'));
    removeNetworkBridges(path.join(this.dataRoot, 'data'));
    // Guest RAM of a template directory of its own lives in /dev/shm, outside the data root.
    const own = path.join(this.dataRoot, 'data', 'templates');
    fs.rmSync(`/dev/shm/hyperbox-${createHash('sha256').update(own).digest('hex').slice(0, 12)}`, { recursive: true, force: true });
    fs.rmSync(this.dataRoot, { recursive: true, force: true });
  }

  /**
   * Signals the daemon and waits for its exit. QEMUs it ran outside its data root
   * (a shared template being built, the KVM probe) cannot finish without it: they go too.
   * Container VMs stay (live restore is tested by killing the daemon).
   */
  private async terminate(signal: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const helpers = qemuChildren(p.pid, this.dataRoot, false);
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    // A signal that lands while Node runs a synchronous child (mount, ip) can be lost
    // (libuv); an init system repeats it, and so does this (a stopping daemon ignores repeats).
    const repeat = signal === 'SIGKILL' ? undefined : setInterval(() => p.exitCode === null && p.signalCode === null && p.kill(signal), 3000);
    await exited;
    clearInterval(repeat);
    for (const pid of helpers) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

/**
 * A daemon keeps its default bridge when it stops (as dockerd keeps docker0), and a
 * killed one keeps its TAPs too: the harness removes them with the data root, or
 * finished test daemons' bridges fill the default bridges' 10.88.0.0/16 (16 /20s) and
 * later daemons fall back to the user-mode network.
 */
export function removeDefaultBridge(dataRoot: string): void {
  const bridge = defaultBridgeName(dataRoot);
  const brif = `/sys/class/net/${bridge}/brif`;
  if (!fs.existsSync(brif)) return;
  const addr = spawnSync('ip', ['-4', '-o', 'addr', 'show', 'dev', bridge], { encoding: 'utf8' }).stdout;
  const m = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(addr);
  deleteTaps(bridge);
  if (!m) {
    spawnSync('ip', ['link', 'del', bridge]);
    return;
  }
  // iptables masks the host bits of `-s`, so the gateway's CIDR names the subnet's NAT rule.
  removeBridge({ bridge, subnet: `${m[1]!}/${m[2]!}`, gateway: m[1]!, prefix: Number(m[2]), internal: false });
}

/** The TAPs on BRIDGE (a killed daemon leaves its VMs' TAPs). */
function deleteTaps(bridge: string): void {
  const brif = `/sys/class/net/${bridge}/brif`;
  if (fs.existsSync(brif)) for (const tap of fs.readdirSync(brif)) spawnSync('ip', ['link', 'del', tap]);
}

/**
 * The bridges of the networks a test daemon created (`network create`, a compose
 * project's): a daemon keeps them when it stops, as it keeps its default bridge, and
 * a test that does not remove its networks (or fails before it does) left them and
 * their NAT rules on the host for the rest of the run (two dozen on a busy machine,
 * each a /24 of the 10.89.0.0/16 every later network is picked from).
 */
function removeNetworkBridges(dataRoot: string): void {
  const file = path.join(dataRoot, 'hyperbox.db');
  if (!fs.existsSync(file)) return;
  let rows: Array<{ record: string }>;
  try {
    const db = new Database(file, { readonly: true });
    rows = db.prepare('SELECT record FROM networks').all() as Array<{ record: string }>;
    db.close();
  } catch {
    return; // no networks table yet
  }
  for (const { record } of rows) {
    const n = JSON.parse(record) as { Bridge?: string; Subnet?: string; Gateway?: string; Internal?: boolean };
    if (!n.Bridge || !n.Subnet || !n.Gateway) continue;
    deleteTaps(n.Bridge);
    removeBridge({ bridge: n.Bridge, subnet: n.Subnet, gateway: n.Gateway, prefix: Number(n.Subnet.split('/')[1]), internal: !!n.Internal });
  }
}

export async function startDaemonWithBusybox(extraArgs: string[] = [], opts: TestDaemonOptions = {}): Promise<TestDaemon> {
  const d = new TestDaemon(extraArgs, {}, opts);
  await d.start();
  await d.importBusybox();
  return d;
}
