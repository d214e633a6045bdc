/**
 * A sandbox is one VM with a connected agent and a container root mounted in it:
 * the thing a container (or, later, a pod) runs its processes in. This module
 * owns how a sandbox comes to be (cold boot now; clones of templates next) and
 * times each phase for `inspect`.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { AgentConnection, type GuestNetwork } from '../agent/connection.js';
import { internal } from '../common/errors.js';
import type { GuestAssets } from '../vm/assets.js';
import { QemuVm, USER_NET, type Accel, type NetSpec } from '../vm/qemu.js';
import { POOL_SUBDIR, releaseMember, type ClonePool } from '../vm/pool.js';
import { startClone, TemplateCorruptError, type Template, type TemplateStore } from '../vm/template.js';
import type { StartInfo } from './types.js';

export interface SandboxOptions {
  runDir: string;
  assets: GuestAssets;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  hostname: string;
  /** The container's --memory, enforced by a cgroup in the guest (bytes; 0: none). */
  memoryLimit?: number;
  /** Host directory with the container's merged root filesystem. */
  rootfs: string;
  bootTimeoutMs: number;
  /** Start as a clone of a template (falls back to a cold boot, saying why). */
  templates?: TemplateStore;
  /** Take a pre-started clone from this pool when one is ready. */
  pool?: ClonePool;
  /** User-mode network: published ports, or `restrict` for `--network none`. */
  net: NetSpec;
  /** tmpfs mounts inside the root, as "/path[:opts]". */
  tmpfs?: string[];
  /** A pod VM: the share is an empty directory container roots are bound into
   * later; no root is mounted at start. */
  noRoot?: boolean;
  /** eth0's configuration when it is not the user-mode network's (a bridge endpoint). */
  guestNet?: GuestNetwork;
}

export interface Sandbox {
  vm: QemuVm;
  agent: AgentConnection;
  info: StartInfo;
  /** The container is done with it: closes the agent channel, stops the VM and
   * cleans up what its start left on the host (for a pod's member: nothing, the
   * pod releases its VM). */
  release(): void;
  /** Ends the container for certain when its process does not stop: the VM is
   * stopped (a pod's member: its process is killed, the VM is the pod's). */
  forceStop(): void;
}

/** Tag of the 9p share carrying a container's root, and its name in the guest. */
export const ROOT_TAG = 'hbroot0';
export const ROOT_NAME = 'root';

export async function startSandbox(opts: SandboxOptions, phases: Record<string, number>): Promise<Sandbox> {
  let t = performance.now();
  const mark = (phase: string) => {
    const now = performance.now();
    phases[phase] = Math.round(now - t);
    t = now;
  };
  let vm: QemuVm | undefined;
  let mode: StartInfo['mode'] = 'cold';
  let fallbackReason: string | undefined;
  let subdir: string | undefined;
  let release = (): void => vm?.kill();
  const shape = { assets: opts.assets, accel: opts.accel, memoryMiB: opts.memoryMiB, cpus: opts.cpus };
  // A pool VM's netdev was set up before its container existed: it serves only
  // containers on the default network without published ports.
  if (opts.templates && opts.pool && !opts.noRoot && !opts.net.restrict && !opts.net.tap && opts.net.forwards.length === 0) {
    const member = await opts.pool.claim(shape, opts.rootfs);
    if (member) {
      vm = member.vm;
      mode = 'pool';
      subdir = POOL_SUBDIR;
      release = () => releaseMember(member);
      mark('vm');
    }
  }
  if (opts.templates && !vm) {
    let template: Template | undefined;
    try {
      template = await opts.templates.ensure(shape);
      mark('template');
      vm = await startClone(template, { runDir: opts.runDir, rootPath: opts.rootfs, net: opts.net });
      mode = 'clone';
      mark('vm');
    } catch (err) {
      fallbackReason = (err as Error).message;
      // A broken template is dropped, so the next start builds a good one.
      if (err instanceof TemplateCorruptError && template) opts.templates.remove(template.key);
    }
  }
  if (!vm) {
    vm = QemuVm.launch({
      runDir: opts.runDir,
      assets: opts.assets,
      accel: opts.accel,
      memoryMiB: opts.memoryMiB,
      cpus: opts.cpus,
      shares: [{ tag: ROOT_TAG, path: opts.rootfs }],
      net: opts.net,
    });
    mark('vm');
  }
  let agent: AgentConnection;
  const started = vm;
  try {
    const died = new Promise<never>((_, reject) =>
      started.once('exit', () => reject(internal(`VM exited during boot: ${started.diagnostics(600) || 'no output'}`))),
    );
    agent = await Promise.race([
      AgentConnection.connect(vm.paths.control, { timeoutMs: opts.bootTimeoutMs }).catch((err: Error) => {
        throw internal(`${err.message} (${mode}); console: ${started.diagnostics(400) || 'empty'}`);
      }),
      died,
    ]);
    mark('boot');
    const network: GuestNetwork | undefined = opts.net.restrict
      ? undefined
      : (opts.guestNet ?? { ipv4: `${USER_NET.guest}/${USER_NET.prefix}`, gateway: USER_NET.gateway, dns: USER_NET.dns });
    await agent.configure({ hostname: opts.hostname, seed: randomBytes(64), network, memoryLimit: opts.memoryLimit });
    mark('configure');
    if (!opts.noRoot) await agent.mountRoot(ROOT_TAG, ROOT_NAME, subdir, opts.tmpfs);
    mark('mount');
  } catch (err) {
    release();
    throw err instanceof Error && 'kind' in err ? err : internal(`VM failed to start: ${(err as Error).message}`);
  }
  return {
    vm,
    agent,
    info: { mode, accel: opts.accel, phases, fallbackReason },
    release: () => {
      agent.close();
      release();
    },
    forceStop: () => started.kill(),
  };
}

/** The sandbox of a VM that outlived the daemon (live restore), once its agent answered again. */
export function adoptedSandbox(vm: QemuVm, agent: AgentConnection, info: StartInfo): Sandbox {
  return {
    vm,
    agent,
    info,
    release: () => {
      agent.close();
      vm.kill();
      fs.rmSync(vm.runDir, { recursive: true, force: true });
    },
    forceStop: () => vm.kill(),
  };
}
