/**
 * The start path of a container below the lifecycle: its root on the host
 * (overlay plus volumes), the VM it runs in (its pod's, or its own: a warm-pool
 * VM, a clone or a cold boot, on its network), and its main process. Each step
 * undoes what it set up when a later one fails.
 */
import path from 'node:path';
import { StartError, type GuestProcess } from '../agent/connection.js';
import { invalid } from '../common/errors.js';
import { NO_CLONE_LABEL } from '../common/labels.js';
import { containerLayerPaths, mountContainerLayer } from '../images/rootfs.js';
import { ROOT_NAME, startSandbox, takeWarmFor, type Sandbox } from '../sandbox/sandbox.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { extraHostLines, parseLink, processEnv } from './create-spec.js';
import type { Pod } from './pods.js';
import { allocatePorts, networkModeOf } from './ports.js';
import { onDisks, prepareDiskRoot, provideFreshDisk, releaseDiskRoot, type DiskRoot } from './disk-root.js';
import type { GuestShape, WarmVm } from '../vm/index.js';
import { mountVolumes, restoreRootWritable, unmountVolumes } from './storage.js';

/** Unmounts a container's volumes and binds from its root (after its VM is gone or going). */
export function releaseStorage(c: Container): void {
  if (onDisks(c)) return releaseDiskRoot(c);
  const root = containerLayerPaths(c.dir).merged;
  unmountVolumes(root);
  restoreRootWritable(root);
}

/** A container's root ready for its VM: a host directory to share (with the tmpfs mounts the guest makes), or disks. */
export interface PreparedRoot {
  /** The host directory shared with the guest: the merged root, or (on disks) the binds' directory, or ''. */
  rootfs: string;
  tmpfs: string[];
  disks?: DiskRoot;
}

/** Mounts the container's overlay and volumes, or (on disks) prepares its disks and binds. */
export async function prepareRoot(ctx: EngineContext, c: Container): Promise<PreparedRoot> {
  if (onDisks(c)) {
    const disks = await prepareDiskRoot(ctx, c);
    return { rootfs: disks.shareDir ?? '', tmpfs: disks.tmpfs, disks };
  }
  const image = ctx.store.resolve(c.record.ImageId);
  const rootfs = mountContainerLayer(await ctx.rootfs.imageRootfs(image), c.dir);
  const tmpfs = mountVolumes(rootfs, c.record.MountPoints ?? [], !!c.record.HostConfig.ReadonlyRootfs);
  return { rootfs, tmpfs };
}

/**
 * The VM a starting container runs in, with its root mounted: its pod's, or
 * its own, on its network. On failure, everything the start set up (storage,
 * network endpoint) is released.
 */
export async function startContainerVm(
  ctx: EngineContext,
  c: Container,
  { rootfs, tmpfs, disks }: PreparedRoot,
  phases: Record<string, number>,
): Promise<{ sandbox: Sandbox; root: string; pod?: Pod }> {
  const hc = c.record.HostConfig;
  const fail = (err: unknown): never => {
    releaseStorage(c);
    throw err;
  };
  let links: string[] = [];
  try {
    links = linkHostLines(ctx, hc.Links);
  } catch (err) {
    fail(err);
  }
  // A user-defined network, or the default bridge (as root); else the driver's built-in network.
  const bridge = ctx.networks.bridgeFor(hc.NetworkMode);
  const netMode = bridge ? 'bridge' : networkModeOf(hc.NetworkMode);
  const { ports, forwards } =
    netMode === 'none' ? { ports: {}, forwards: [] } : await allocatePorts(hc.PortBindings ?? {}, c.record.Config.ExposedPorts ?? {}, !!hc.PublishAllPorts).catch(fail);
  c.record.Ports = ports;
  const hosts = (gateway: string | undefined) => [...extraHostLines(hc.ExtraHosts, gateway), ...links];
  const pod = c.record.PodId ? ctx.pods.get(c.record.PodId) : undefined;
  if (pod) {
    // Its pod's VM: the pod publishes the ports (a member has none bound, see create).
    const attached = await ctx.pods.attach(pod, c.id, rootfs, tmpfs, hosts).catch(fail);
    return { sandbox: attached.sandbox.memberView(() => c.main?.signal(9)), root: attached.root, pod };
  }
  const useClone = ctx.opts.clone && c.record.Config.Labels[NO_CLONE_LABEL] === undefined;
  let shape: GuestShape = {
    ...ctx.guestShape(hc.Memory ? Math.max(128, Math.ceil(hc.Memory / 1048576) + 64) : undefined, Math.max(1, Math.ceil(hc.NanoCpus / 1e9))),
    ...(disks ? { root: disks.shareDir ? ('disks+share' as const) : ('disks' as const) } : {}),
  };
  const builtinNet = { forwards, restrict: netMode === 'none' };
  const take = useClone ? (s: GuestShape) => takeWarmFor(ctx.driver, s, bridge ? 'bridge' : builtinNet) : undefined;
  let warmVm: WarmVm | undefined;
  if (disks) {
    // A new container's disk: a copy of its template's pre-mounted one if it can (the shape says so).
    const t = performance.now();
    ({ shape, warm: warmVm } = await provideFreshDisk(ctx, c, disks, shape, take).catch(fail));
    phases.rootfs = (phases.rootfs ?? 0) + Math.round(performance.now() - t);
  } else warmVm = take?.(shape);
  const options = {
    driver: ctx.driver,
    runDir: path.join(ctx.runRoot, c.id.slice(0, 12)),
    shape,
    hostname: c.record.Config.Hostname,
    memoryLimit: hc.Memory,
    rootfs,
    bootTimeoutMs: ctx.opts.bootTimeoutMs,
    clone: useClone,
    warmVm,
    tmpfs,
    hosts,
    // `run --rm`: the disk goes with the container, so its exit need not wait for a sync of it.
    disks: disks && { files: disks.disks, binds: disks.binds, readonly: disks.readonly, discardOnExit: hc.AutoRemove === true },
  };
  // On a bridge network the VM's NIC is a TAP (a warm-pool VM's, or a new one) and published ports go through a host proxy.
  // A warm VM that was never started on is discarded (discarding twice is harmless).
  const failStart = (err: unknown): never => (warmVm?.discard(), fail(err));
  const { sandbox, endpoint } = bridge
    ? await ctx.networks.startOn(bridge, c.id, forwards, (net, guestNet) => startSandbox({ ...options, net, guestNet }, phases), warmVm?.net.tap, c.record.Config.MacAddress).catch(failStart)
    : { sandbox: await startSandbox({ ...options, net: builtinNet }, phases).catch(failStart), endpoint: undefined };
  c.record.Endpoint = endpoint;
  return { sandbox, root: ROOT_NAME };
}

/**
 * /etc/hosts lines for legacy links (`--link NAME:ALIAS`): the linked
 * container's address under the alias and its names. It must be running on a
 * bridge network, where VMs reach each other (as dockerd refuses a link to a
 * container that is not running).
 */
function linkHostLines(ctx: EngineContext, links: string[] | undefined): string[] {
  return (links ?? []).flatMap((spec) => {
    const { name, alias } = parseLink(spec);
    const target = ctx.registry.get(name);
    const ip = target.running ? target.record.Endpoint?.IPAddress : undefined;
    if (!target.running) throw invalid(`Cannot link to a non running container: ${target.name} AS /${alias}`);
    if (!ip) throw invalid(`cannot link to ${target.shortName}: it is not on a bridge network, where containers reach each other`);
    return [...new Set([alias, target.shortName, target.id.slice(0, 12)])].map((name) => `${ip} ${name}`);
  });
}

/** Docker's exit code for a process that could not be started. */
export function startFailureCode(err: StartError): number {
  if (/executable file not found|no such file or directory/.test(err.message)) return 127;
  return err.errno === 13 ? 126 : 128;
}

/** Starts the image's process in the container's root; a failure releases the VM and storage. */
export async function startMainProcess(c: Container, sandbox: Sandbox, root: string): Promise<GuestProcess> {
  c.sandbox = sandbox;
  const cfg = c.record.Config;
  const hc = c.record.HostConfig;
  const [rows, cols] = hc.ConsoleSize ?? [0, 0];
  try {
    return await sandbox.exec({
      root,
      args: [...cfg.Entrypoint, ...cfg.Cmd],
      env: processEnv(cfg),
      cwd: cfg.WorkingDir,
      user: cfg.User,
      tty: cfg.Tty,
      stdin: cfg.OpenStdin,
      rows,
      cols,
      capAdd: hc.CapAdd,
      groupAdd: hc.GroupAdd,
      capDrop: hc.CapDrop,
      privileged: hc.Privileged,
      init: hc.Init,
      // Its log is acknowledged as written: no line lost to a daemon killed (live restore).
      keepOutput: true,
    });
  } catch (err) {
    sandbox.release();
    c.sandbox = undefined;
    c.record.Endpoint = undefined;
    releaseStorage(c);
    if (err instanceof StartError) {
      Object.assign(c.record.State, { ExitCode: startFailureCode(err), Error: err.message });
      c.save();
      throw invalid(`failed to create task for container: failed to start the container process: ${err.message}: unknown`);
    }
    throw err;
  }
}
