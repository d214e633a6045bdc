/**
 * The pod's VM, owned by this shim through the sandbox library (never through
 * hyperboxd): booted on the first container as an instant clone of a template
 * with an empty root share; each container's root (the bundle's rootfs, which
 * containerd mounted) is bound under the share and mounted in the guest in a
 * mount namespace of its own. What a dead shim leaves (a VM, binds) is found
 * again from vm.json in the pod directory by `delete` and removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger.js';
import { mountsUnder } from '../common/mounts.js';
import { bindRoot, openRuntime, unbindRoot, type Sandbox, type SandboxRuntime } from '../sandbox/index.js';
import type { RootMounts } from './oci.js';
import { joinPodNetwork } from './pod-net.js';
import { Code, RpcError } from './ttrpc.js';

interface VmRecord {
  pid: number;
  runDir: string;
}

export interface PodVmOptions {
  /** The shim's state: templates and accelerator verdict (shared by all pods). */
  stateDir: string;
  /** This pod's directory: share/, vm/ (QEMU's run directory) and vm.json. */
  podDir: string;
  logger: Logger;
  accel?: string;
}

export class PodVm {
  private runtime: SandboxRuntime | undefined;
  private booting: Promise<Sandbox> | undefined;
  sandbox: Sandbox | undefined;

  constructor(private readonly opts: PodVmOptions) {}

  get shareDir(): string {
    return path.join(this.opts.podDir, 'share');
  }

  /** The VM, booted on first use with HOSTNAME, in network namespace NETNS if given (CNI's). */
  ensure(hostname: string, netns?: string): Promise<Sandbox> {
    this.booting ??= this.boot(hostname, netns).catch((err: Error) => {
      this.booting = undefined;
      throw new RpcError(Code.Internal, `starting the pod VM: ${err.message}`);
    });
    return this.booting;
  }

  private async boot(hostname: string, netns: string | undefined): Promise<Sandbox> {
    fs.mkdirSync(this.shareDir, { recursive: true, mode: 0o700 });
    this.runtime ??= await openRuntime({ stateDir: this.opts.stateDir, accel: this.opts.accel, logger: this.opts.logger });
    const runDir = path.join(this.opts.podDir, 'vm');
    // Without a namespace path (ctr, a NODE-network pod) the VM has the built-in NAT network.
    const network = netns ? joinPodNetwork(netns) : {};
    const sandbox = await this.runtime.start({ rootfs: this.shareDir, noRoot: true, hostname: hostname.slice(0, 63) || 'hyperbox', runDir, ...network });
    // A VM that dies (or is stopped) ends its processes: each is reported killed.
    sandbox.agent.on('close', () => {
      for (const p of sandbox.agent.orphans()) p.finish({ code: 137, signal: 9 });
    });
    const rec: VmRecord = { pid: sandbox.pid, runDir };
    fs.writeFileSync(path.join(this.opts.podDir, 'vm.json'), JSON.stringify(rec));
    this.opts.logger.info(`pod VM started (${sandbox.info.mode}, ${JSON.stringify(sandbox.info.phases)})`);
    this.sandbox = sandbox;
    return sandbox;
  }

  /** Puts ROOTFS into the VM as root NAME with its mounts; returns the root's name for `exec`. */
  async attach(name: string, rootfs: string, hostname: string, mounts: RootMounts, netns?: string): Promise<string> {
    const sandbox = await this.ensure(hostname, netns);
    const binds: Array<{ source: string; dest: string; readonly: boolean }> = [];
    try {
      bindRoot(path.join(this.shareDir, name), rootfs);
      mounts.binds.forEach((b, i) => {
        const source = `${name}.bind${i}`;
        bindRoot(path.join(this.shareDir, source), b.hostPath, b.recursive !== false);
        binds.push({ source, dest: b.dest, readonly: b.readonly });
      });
      await sandbox.mountRoot(name, name, mounts.tmpfs, { isolate: true, binds, readonly: mounts.readonly });
    } catch (err) {
      this.detach(name);
      throw err instanceof RpcError ? err : new RpcError(Code.Internal, `mounting the root of ${name}: ${(err as Error).message}`);
    }
    return name;
  }

  /** Unbinds root NAME and its binds from the share (the guest's mounts of it go with the VM). */
  detach(name: string): void {
    if (!fs.existsSync(this.shareDir)) return;
    for (const entry of fs.readdirSync(this.shareDir)) {
      if (entry !== name && !entry.startsWith(`${name}.bind`)) continue;
      if (!unbindRoot(path.join(this.shareDir, entry))) this.opts.logger.warn(`${entry} is still mounted: kept`);
    }
  }

  /** Stops the VM and removes the pod directory (never through a mount). */
  async release(): Promise<void> {
    const sandbox = this.sandbox ?? (await this.booting?.catch(() => undefined));
    if (sandbox) {
      sandbox.release();
      await sandbox.waitExit();
    }
    removePodDir(this.opts.podDir, this.opts.logger);
  }
}

/** What a shim that died left of pod PODDIR: its VM is stopped, its binds undone, the directory removed. */
export async function cleanupDeadPod(stateDir: string, podDir: string, logger: Logger): Promise<void> {
  const recFile = path.join(podDir, 'vm.json');
  if (fs.existsSync(recFile)) {
    const rec = JSON.parse(fs.readFileSync(recFile, 'utf8')) as VmRecord;
    const runtime = await openRuntime({ stateDir, logger });
    const vm = runtime.driver.adopt(rec.pid, rec.runDir); // undefined when it is gone (or the pid was reused)
    if (vm) {
      vm.stop();
      await vm.waitExit();
    }
  }
  removePodDir(podDir, logger);
}

function removePodDir(podDir: string, logger: Logger): void {
  const share = path.join(podDir, 'share');
  for (const entry of fs.existsSync(share) ? fs.readdirSync(share) : []) unbindRoot(path.join(share, entry));
  const left = mountsUnder(podDir);
  if (left.length) logger.warn(`${podDir} is still mounted (${left.join(', ')}): kept`);
  else fs.rmSync(podDir, { recursive: true, force: true });
}
