/**
 * A containerd of a test's own: its own root, state, socket and config (no
 * systemd), with the hyperbox shim (bin/) on its PATH and the shim's state in
 * the test's directory. Stopped and its directory removed (never through a
 * mount) by stop().
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { qemuProcesses, repo, waitFor } from './daemon.js';

export const NAMESPACE = 'hbtest';
export const RUNTIME = 'io.containerd.hyperbox.v2';
export const IMAGE = 'docker.io/library/busybox:latest';
/** The same busybox layer with a process that waits forever: the pod sandbox's "pause" container. */
export const PAUSE_IMAGE = 'docker.io/library/busybox:pause';
/** Where Debian's containernetworking-plugins puts the CNI plugins. */
const CNI_PLUGINS = '/usr/lib/cni';

export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestContainerdOptions {
  /** A registry ("host:port") reached over plain HTTP (a test's own, e.g. test/helpers/registry.ts). */
  httpRegistry?: string;
}

export class TestContainerd {
  constructor(private readonly opts: TestContainerdOptions = {}) {}

  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbctd-'));
  readonly address = path.join(this.dir, 'containerd.sock');
  readonly shimState = path.join(this.dir, 'shim');
  private proc: ChildProcess | undefined;

  /** This containerd's CNI bridge (a name and a /24 of its own: other tests run at the same time). */
  readonly cniBridge = `hbcni${process.pid % 100000}`;
  readonly cniSubnet = `10.244.${process.pid % 250}.0/24`;

  async start(): Promise<void> {
    this.writeCniConfig();
    const config = path.join(this.dir, 'config.toml');
    fs.writeFileSync(config, [
      'version = 2',
      `root = "${this.dir}/root"`,
      `state = "${this.dir}/state"`,
      '[grpc]',
      `  address = "${this.address}"`,
      // The CRI plugin: the pod sandbox's container is the image tagged "pause" (no registry here);
      // RuntimeClass handler `hyperbox` is the shim. CNI: a bridge of this containerd's own.
      '[plugins."io.containerd.grpc.v1.cri"]',
      `  sandbox_image = "${PAUSE_IMAGE}"`,
      '  restrict_oom_score_adj = true',
      '[plugins."io.containerd.grpc.v1.cri".cni]',
      `  bin_dir = "${this.dir}/cni/bin"`,
      `  conf_dir = "${this.dir}/cni/conf"`,
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '  runtime_type = "io.containerd.runc.v2"',
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hyperbox]',
      `  runtime_type = "${RUNTIME}"`,
      ...(this.opts.httpRegistry ? [`[plugins."io.containerd.grpc.v1.cri".registry.mirrors."${this.opts.httpRegistry}"]`, `  endpoint = ["http://${this.opts.httpRegistry}"]`] : []),
    ].join('\n') + '\n');
    const log = fs.openSync(path.join(this.dir, 'containerd.log'), 'a');
    this.proc = spawn('containerd', ['--config', config], {
      stdio: ['ignore', log, log],
      env: { ...process.env, PATH: `${path.join(repo, 'bin')}:${process.env.PATH}`, HYPERBOX_SHIM_STATE: this.shimState },
    });
    fs.closeSync(log);
    await waitFor(() => this.ctr(['version']).code === 0, { what: 'containerd to answer', timeoutMs: 20_000, intervalMs: 200 });
  }

  /** Debian's CNI plugins (containernetworking-plugins) in a bin dir of this containerd's own, and its network. */
  private writeCniConfig(): void {
    const bin = path.join(this.dir, 'cni/bin');
    const conf = path.join(this.dir, 'cni/conf');
    if (fs.existsSync(conf)) return;
    fs.mkdirSync(bin, { recursive: true });
    fs.mkdirSync(conf, { recursive: true });
    for (const plugin of ['bridge', 'host-local', 'loopback', 'portmap']) fs.symlinkSync(path.join(CNI_PLUGINS, plugin), path.join(bin, plugin));
    fs.writeFileSync(path.join(conf, '10-hbtest.conflist'), JSON.stringify({
      cniVersion: '0.4.0',
      name: 'hbtest',
      plugins: [
        { type: 'bridge', bridge: this.cniBridge, isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: this.cniSubnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(this.dir, 'cni/ipam') } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }));
  }

  /** Runs `ctr` against this containerd in the test namespace. */
  ctr(args: string[], opts: { input?: string; timeoutMs?: number; namespace?: string } = {}): CtrResult {
    return run('ctr', ['--address', this.address, '-n', opts.namespace ?? NAMESPACE, ...args], opts);
  }

  /** Runs crictl (built by scripts/setup-cri.sh) against this containerd's CRI plugin. */
  crictl(args: string[], opts: { timeoutMs?: number } = {}): CtrResult {
    const endpoint = `unix://${this.address}`;
    return run(path.join(criToolsDir(), 'crictl'), ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '--timeout', '60s', ...args], opts);
  }

  log(): string {
    return fs.readFileSync(path.join(this.dir, 'containerd.log'), 'utf8');
  }

  /** Stops containerd and starts it again on the same root, state and config (its shims go on). */
  async restart(): Promise<void> {
    await this.stopProcess();
    await this.start();
  }

  private async stopProcess(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  }

  async stop(): Promise<void> {
    await this.stopProcess();
    // Shims outlive containerd by design: end this test's (they stop their VMs), then any QEMU left.
    for (const pid of shimPids(this.dir)) process.kill(pid, 'SIGTERM');
    await waitFor(() => shimPids(this.dir).length === 0, { what: 'the shims to exit', timeoutMs: 20_000, intervalMs: 100 }).catch(() => {
      for (const pid of [...shimPids(this.dir), ...qemuProcesses(this.dir)]) process.kill(pid, 'SIGKILL');
    });
    // containerd leaves its snapshot mounts (and shims theirs) to their owners: undo what is left.
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${this.dir}/`));
    for (const m of mounts.sort().reverse()) spawnSync('umount', ['-l', m]);
    spawnSync('ip', ['link', 'del', this.cniBridge], { stdio: 'ignore' });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number }): CtrResult {
  const r = spawnSync(cmd, args, { input: opts.input ?? '', encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}

/** Where scripts/setup-cri.sh put crictl and critest. */
let toolsDir: string | undefined;
export function criToolsDir(): string {
  if (toolsDir) return toolsDir;
  const r = spawnSync('bash', [path.join(repo, 'scripts/setup-cri.sh')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/setup-cri.sh: ${r.stderr}`);
  return (toolsDir = r.stdout.trim());
}

/** Pids of the serving shims whose command line names a path under DIR. */
export function shimPids(dir: string): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      return cmd.includes('containerd-shim-hyperbox-v2') && cmd.includes(`${dir}/`) && cmd.endsWith('serve\0');
    } catch {
      return false;
    }
  }).map(Number);
}

/** An OCI image layout (tags latest and pause) of build/busybox-rootfs.tar, built with umoci. */
export function busyboxLayout(dir: string): string {
  const layout = path.join(dir, 'oci');
  umoci(['init', '--layout', layout]);
  umoci(['new', '--image', `${layout}:latest`]);
  umoci(['raw', 'add-layer', '--image', `${layout}:latest`, path.join(repo, 'build/busybox-rootfs.tar')]);
  umoci(['config', '--image', `${layout}:latest`, '--config.cmd', 'sh', '--config.env', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin']);
  umoci(['config', '--image', `${layout}:latest`, '--tag', 'pause', '--config.cmd', 'sleep', '--config.cmd', '2147483647']);
  return layout;
}

export function umoci(args: string[]): void {
  const r = spawnSync('umoci', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umoci ${args.join(' ')}: ${r.stderr}`);
}

/** An OCI image archive of busyboxLayout, to `ctr image import`. */
export function busyboxArchive(dir: string): string {
  const layout = busyboxLayout(dir);
  const archive = path.join(dir, 'busybox-oci.tar');
  spawnSync('tar', ['-C', layout, '-cf', archive, '.']);
  return archive;
}
