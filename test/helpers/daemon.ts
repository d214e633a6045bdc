/**
 * Test harness: each suite starts its own hyperboxd (own socket, own data root)
 * and drives it through the real `hyperbox` CLI, so tests exercise exactly what
 * users run. VMs boot for real.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const busyboxTar = path.join(repo, 'build/busybox-rootfs.tar');
const cli = path.join(repo, 'bin/hyperbox');
const daemonBin = path.join(repo, 'bin/hyperboxd');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestDaemon {
  readonly host: string;
  readonly dataRoot: string;
  readonly socket: string;
  proc: ChildProcess | undefined;
  log = '';

  constructor(readonly extraArgs: string[] = [], readonly env: NodeJS.ProcessEnv = {}) {
    this.dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-'));
    this.socket = path.join(this.dataRoot, 'd.sock');
    this.host = `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(daemonBin, ['-H', this.host, '--data-root', path.join(this.dataRoot, 'data'), '--log-level', 'debug', ...this.extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env },
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
    const deadline = Date.now() + 60_000;
    while (!this.log.includes('API listen on')) {
      if (this.proc.exitCode !== null) throw new Error(`hyperboxd exited: ${this.log}`);
      if (Date.now() > deadline) throw new Error(`hyperboxd did not start: ${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async importBusybox(): Promise<void> {
    const r = await this.run(['import', '-c', 'CMD ["sh"]', busyboxTar, 'busybox:latest']);
    if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
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

  /** Stops the daemon (SIGTERM, or SIGKILL) and starts it again on the same data root. */
  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc!.once('exit', r));
      this.proc.kill(signal);
      await exited;
    }
    this.log = '';
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      await new Promise((r) => this.proc!.once('exit', r));
    }
    // A test that failed half-way (or killed its daemon on purpose) may leave VMs: none survive the harness.
    spawnSync('pkill', ['-9', '-f', `qemu-system.*${this.dataRoot}/`]);
    spawnSync('sh', ['-c', `grep -o '${this.dataRoot}[^ ]*' /proc/mounts | sort -r | xargs -r umount -l`]);
    fs.rmSync(this.dataRoot, { recursive: true, force: true });
  }
}

export async function startDaemonWithBusybox(extraArgs: string[] = []): Promise<TestDaemon> {
  const d = new TestDaemon(extraArgs);
  await d.start();
  await d.importBusybox();
  return d;
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
