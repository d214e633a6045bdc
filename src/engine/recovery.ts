/**
 * What a daemon start finds: the database reconciled with the disk, and live
 * restore of the containers and pods whose VMs outlived the previous daemon
 * (their control channel, main process, logs and exit code come back; the
 * agent kept what they printed and the daemon had not logged, and resends it). VMs nobody owns are stopped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { mountsUnder } from '../common/mounts.js';
import { containerLayerPaths, unmountContainerLayer } from '../images/rootfs.js';
import { adoptVm, StalledVm } from '../sandbox/adopt.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import type { Lifecycle } from './lifecycle.js';
import type { Pod } from './pods.js';
import { loggedPosition } from './log-acks.js';
import { forwardsOf } from './ports.js';
import { containerOf } from './removal.js';
import { releaseStorage } from './start-vm.js';
import { transition } from './state.js';
import { unmountVolumes } from './storage.js';

/**
 * Loads containers from the database and reconciles it with the disk: a
 * directory no record names (a create or remove cut short by a crash) is
 * unmounted and deleted; a record whose directory is gone gets a fresh one
 * (its writable layer is lost, which is reported).
 */
export function loadContainers(ctx: EngineContext): void {
  for (const record of ctx.metadata.all()) {
    const c = containerOf(ctx, record);
    if (!fs.existsSync(c.dir)) {
      ctx.logger.warn(`container ${c.id.slice(0, 12)}: its directory was missing; recreated with an empty writable layer`);
      fs.mkdirSync(c.dir, { recursive: true });
    }
    // Volumes a previous daemon left mounted on a stopped container's root
    // (running ones keep theirs: recover() re-attaches them).
    if (!c.record.State.Running) releaseStorage(c);
    ctx.registry.add(c);
  }
  for (const id of fs.readdirSync(ctx.containersDir)) {
    if (ctx.registry.has(id)) continue;
    const dir = path.join(ctx.containersDir, id);
    ctx.logger.warn(`removing ${dir}: no container record names it (an operation cut short)`);
    try {
      unmountVolumes(containerLayerPaths(dir).merged);
      unmountContainerLayer(dir);
    } catch (err) {
      ctx.logger.warn(`unmount ${dir}: ${(err as Error).message}`);
    }
    if (mountsUnder(dir).length === 0) fs.rmSync(dir, { recursive: true, force: true });
    else ctx.logger.warn(`${dir} is still mounted: kept`);
  }
}

/**
 * Of CONTAINERS' main processes, those whose agent keeps their output until
 * acknowledged, with how much of it their logs hold: the agent resends the rest.
 */
function resumeFrom(containers: Container[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const c of containers) {
    const { MainProcId: id, MainLogRun: run } = c.record;
    if (id && run) out.set(id, loggedPosition(c.logFile, run));
  }
  return out;
}

export class Recovery {
  constructor(
    private readonly ctx: EngineContext,
    private readonly lifecycle: Lifecycle,
  ) {}

  /**
   * Live restore: containers recorded as running whose VM is still alive are
   * re-attached; those whose VM is gone are marked exited (137). Leftover VMs
   * nobody owns (the previous warm pool, a start cut short) are stopped.
   */
  async recover(): Promise<void> {
    const { ctx } = this;
    const owned = new Set<number>();
    // Pod VMs first: their members' processes are adopted on the pod's one agent channel.
    const podRunDirs = await ctx.pods.recover((pod) => {
      const members = ctx.registry.podMembers(pod.id).filter((c) => c.record.State.Running && c.record.MainProcId);
      return { procIds: members.map((c) => c.record.MainProcId!), resume: resumeFrom(members) };
    });
    const running = [...ctx.registry.all()].filter((c) => c.record.State.Running);
    await Promise.all(
      running.map(async (c) => {
        const error = await this.reattach(c).catch((err: Error) => err.message);
        if (error === undefined) {
          owned.add(c.record.VmPid!);
          return;
        }
        if (c.record.VmPid && c.record.VmRunDir && ctx.driver.isLive(c.record.VmPid, c.record.VmRunDir)) process.kill(c.record.VmPid, 'SIGKILL');
        ctx.logger.warn(`container ${c.id.slice(0, 12)} could not be re-attached: ${error}`);
        transition(c.record.State, 'exited', { exitCode: 137, error });
        c.record.VmPid = undefined;
        c.record.Endpoint = undefined;
        c.save();
        releaseStorage(c);
      }),
    );
    // Bridges and their DNS come back; TAPs nobody runs on go. With a default
    // bridge, warm-pool VMs get TAPs, so the pool serves bridge networks too.
    await ctx.networks.init();
    if (ctx.networks.defaultBridge) ctx.driver.setPoolNet(ctx.networks.poolTaps());
    const live = [...ctx.registry.all()].filter((c) => c.running);
    const taps = [...live.map((c) => c.record.Endpoint?.Tap), ...ctx.pods.list().map((p) => (p.sandbox ? p.record.Endpoint?.Tap : undefined))];
    ctx.networks.sweepTaps(new Set(taps.filter((t): t is string => !!t)));
    const keep = new Set<string | undefined>([...live.map((c) => c.record.VmRunDir), ...podRunDirs]);
    for (const dir of fs.readdirSync(ctx.runRoot)) {
      const runDir = path.join(ctx.runRoot, dir);
      if (keep.has(runDir)) continue;
      const pid = ctx.driver.recordedPid(runDir);
      if (pid && !owned.has(pid) && ctx.driver.isLive(pid, runDir)) {
        ctx.logger.info(`stopping a VM left by a previous daemon (${dir})`);
        process.kill(pid, 'SIGKILL');
      }
      ctx.driver.releaseRunDir(runDir);
      if (mountsUnder(runDir).length === 0) fs.rmSync(runDir, { recursive: true, force: true });
    }
  }

  /** Re-attaches one running container; returns why it could not be, or undefined. */
  private async reattach(c: Container): Promise<string | undefined> {
    if (c.record.PodId) return this.reattachPodMember(c);
    const { VmPid: pid, VmRunDir: runDir, MainProcId: procId } = c.record;
    if (!pid || !runDir || !procId) return 'the daemon restarted and this container has no live-restore record';
    const adopted = await adoptVm(this.ctx.driver, {
      pid,
      runDir,
      procIds: [procId],
      resume: resumeFrom([c]),
      paused: c.record.State.Paused,
      info: c.record.StartInfo ?? { mode: 'cold', accel: this.ctx.opts.accel.accel, phases: {} },
    });
    // A bridge endpoint's TAP survived with the VM; its port proxies died with the old daemon.
    const endpoint = c.record.Endpoint;
    if (endpoint) {
      this.ctx.networks.adopt(endpoint);
      await this.ctx.networks.bindToVm(adopted, endpoint, forwardsOf(c.record.Ports ?? {}));
    }
    if (adopted instanceof StalledVm) {
      // Not resumed: QEMU would retry the write and stop again before its agent answers.
      this.lifecycle.stalls.keep(c, adopted);
      this.ctx.logger.info(`kept container ${c.id.slice(0, 12)} (VM pid ${pid}) paused: its VM is stopped on a write the host could not complete; its agent is re-attached at unpause`);
      return undefined;
    }
    this.lifecycle.adoptMain(c, adopted, procId);
    this.ctx.logger.info(`re-attached container ${c.id.slice(0, 12)} (VM pid ${pid})`);
    return undefined;
  }

  /** A pod member after a daemon restart: its process, adopted on its pod's re-attached agent. */
  private reattachPodMember(c: Container): string | undefined {
    let pod: Pod;
    try {
      pod = this.ctx.pods.get(c.record.PodId!);
    } catch {
      return 'its pod is gone';
    }
    const procId = c.record.MainProcId;
    if (!pod.sandbox || !procId || !pod.sandbox.agent.adopted(procId)) return "the pod's VM exited while the daemon was down";
    this.lifecycle.adoptMain(c, pod.sandbox.memberView(() => c.main?.signal(9)), procId);
    this.ctx.logger.info(`re-attached container ${c.id.slice(0, 12)} in pod ${pod.name}`);
    return undefined;
  }
}
