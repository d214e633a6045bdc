/**
 * containerd's Task service (runtime/v2/task/shim.proto) for the containers of
 * one pod: each container's root is mounted in the pod VM, its processes run
 * in it, and their life is reported as events, in order.
 */
import path from 'node:path';
import type { Logger } from '../common/logger.js';
import type { EventPublisher } from './events.js';
import { netnsPathOf, processSpec, readSpec, rootMounts, type OciProcess } from './oci.js';
import { limitsOf, linuxProcessSpec, type OciResources } from './resources.js';
import type { PodVm } from './pod-vm.js';
import { ShimProcess, type ProcStatus } from './process.js';
import { mountRootfs, unmountRootfs } from './rootfs.js';
import { decode, encode, packAny, timestamp } from './proto.js';
import { containerMetrics } from './stats.js';
import { Code, RpcError, unimplemented, type Handler } from './ttrpc.js';

interface Task {
  id: string;
  bundle: string;
  /** bundle/rootfs when this shim mounted it, to unmount at Delete. */
  mountedRootfs?: string;
  root: string;
  init: ShimProcess;
  execs: Map<string, ShimProcess>;
  /** The spec's seccomp program: its execs run under it too (as with runc). */
  seccomp?: Buffer;
}

const STATUS: Record<ProcStatus, number> = { created: 1, running: 2, stopped: 3, paused: 4 };
const EMPTY = Buffer.alloc(0);
/** Task v2 and v3 share these messages; containerd 2.x asks for v3 first. */
const M = (name: string) => `containerd.task.v2.${name}`;

type Req = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class TaskService {
  private readonly tasks = new Map<string, Task>();

  constructor(
    private readonly pod: PodVm,
    private readonly events: EventPublisher,
    private readonly logger: Logger,
    /** Called when Shutdown finds no task left: the shim exits. */
    private readonly onShutdown: () => void,
  ) {}

  /** The handlers by method name, decoding and encoding each one's messages. */
  handlers(): Record<string, Handler> {
    const h = (req: string, res: string | undefined, fn: (r: Req) => Promise<object | undefined>): Handler => async (payload) => {
      const out = await fn(decode(M(req), payload));
      return res ? encode(M(res), out ?? {}) : EMPTY;
    };
    return {
      Create: h('CreateTaskRequest', 'CreateTaskResponse', (r) => this.create(r)),
      Start: h('StartRequest', 'StartResponse', (r) => this.start(r)),
      Delete: h('DeleteRequest', 'DeleteResponse', (r) => this.delete(r)),
      State: h('StateRequest', 'StateResponse', async (r) => this.state(r)),
      Wait: h('WaitRequest', 'WaitResponse', (r) => this.wait(r)),
      Kill: h('KillRequest', undefined, async (r) => (this.proc(r.id, r.exec_id).signal(r.signal), undefined)),
      Exec: h('ExecProcessRequest', undefined, async (r) => this.exec(r)),
      Pids: h('PidsRequest', 'PidsResponse', async (r) => this.pids(r)),
      CloseIO: h('CloseIORequest', undefined, async (r) => (r.stdin && this.proc(r.id, r.exec_id).closeStdin(), undefined)),
      ResizePty: h('ResizePtyRequest', undefined, async (r) => (this.proc(r.id, r.exec_id).resize(r.height, r.width), undefined)),
      Pause: h('PauseRequest', undefined, (r) => this.pause(r.id, true)),
      Resume: h('ResumeRequest', undefined, (r) => this.pause(r.id, false)),
      Connect: h('ConnectRequest', 'ConnectResponse', async () => ({ shim_pid: process.pid, task_pid: this.pod.sandbox?.pid ?? 0 })),
      Shutdown: h('ShutdownRequest', undefined, async (r) => this.shutdown(r.now === true)),
      Stats: h('StatsRequest', 'StatsResponse', (r) => this.stats(r.id)),
      Update: h('UpdateTaskRequest', undefined, (r) => this.update(r)),
      Checkpoint: h('CheckpointTaskRequest', undefined, async () => Promise.reject(unimplemented('Checkpoint'))),
    };
  }

  private task(id: string): Task {
    const t = this.tasks.get(id);
    if (!t) throw new RpcError(Code.NotFound, `task ${id} not found`);
    return t;
  }

  private proc(id: string, execId: string): ShimProcess {
    const t = this.task(id);
    if (!execId) return t.init;
    const p = t.execs.get(execId);
    if (!p) throw new RpcError(Code.NotFound, `exec ${execId} of task ${id} not found`);
    return p;
  }

  private async create(r: Req): Promise<object> {
    const id = String(r.id);
    if (this.tasks.has(id)) throw new RpcError(Code.AlreadyExists, `task ${id} already exists`);
    if (r.checkpoint) throw unimplemented('restoring from a checkpoint');
    const bundle = String(r.bundle);
    const spec = readSpec(bundle);
    const rootfsDir = path.join(bundle, typeof spec.root?.path === 'string' ? spec.root.path : 'rootfs');
    if (path.relative(bundle, rootfsDir).startsWith('..')) throw new RpcError(Code.InvalidArgument, 'root.path must be inside the bundle');
    // The root's name in the guest and under the share: short, unique in the pod.
    const root = `c${this.tasks.size}-${id.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 24)}`;
    const linux = linuxProcessSpec(spec.linux);
    const procSpec = { ...processSpec(spec.process, root, false), ...linux };
    const io = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal === true };
    mountRootfs(r.rootfs ?? [], rootfsDir);
    try {
      await this.pod.attach(root, rootfsDir, spec.hostname || id, rootMounts(spec), netnsPathOf(spec));
      // The root's own cgroup, always: its memory.events tells its OOM kills from another container's.
      await this.pod.sandbox!.setLimits(root, limitsOf(spec.linux?.resources)).catch((err: Error) => {
        this.pod.detach(root);
        throw new RpcError(Code.InvalidArgument, `applying linux.resources: ${err.message}`);
      });
    } catch (err) {
      if (r.rootfs?.length) unmountRootfs(rootfsDir);
      throw err;
    }
    const init = new ShimProcess(id, '', procSpec, io);
    init.pid = this.pod.sandbox!.pid; // the host process that runs the container: its VM
    this.tasks.set(id, { id, bundle, root, init, execs: new Map(), mountedRootfs: r.rootfs?.length ? rootfsDir : undefined, seccomp: linux.seccomp });
    this.events.publish('TaskCreate', { container_id: id, bundle, rootfs: r.rootfs, io, pid: init.pid });
    return { pid: init.pid };
  }

  private async start(r: Req): Promise<object> {
    const p = this.proc(r.id, r.exec_id);
    const pid = await p.start(this.pod.sandbox!, (done) => this.exited(done));
    if (p.execId) this.events.publish('TaskExecStarted', { container_id: p.containerId, exec_id: p.execId, pid });
    else this.events.publish('TaskStart', { container_id: p.containerId, pid });
    return { pid };
  }

  private exited(p: ShimProcess): void {
    const exit = p.exit!;
    // Before the exit: the CRI plugin gives an exit after a TaskOOM the reason OOMKilled.
    if (p.oomKilled) this.events.publish('TaskOOM', { container_id: p.containerId });
    this.events.publish('TaskExit', { container_id: p.containerId, id: p.execId || p.containerId, pid: p.pid, exit_status: exit.status, exited_at: timestamp(exit.at) });
    // The init's end ends the container's other processes (its PID namespace goes).
    if (!p.execId) for (const e of this.tasks.get(p.containerId)?.execs.values() ?? []) if (e.status !== 'stopped') e.signal(9);
  }

  private async delete(r: Req): Promise<object> {
    const t = this.task(r.id);
    const p = this.proc(r.id, r.exec_id);
    if (p.status !== 'stopped' && p.status !== 'created') throw new RpcError(Code.FailedPrecondition, `process ${r.exec_id || r.id} is ${p.status}: kill it first`);
    if (p.status === 'created') p.finish(0);
    const exit = p.exit!;
    if (p.execId) t.execs.delete(p.execId);
    else {
      this.tasks.delete(t.id);
      this.pod.detach(t.root);
      if (t.mountedRootfs) unmountRootfs(t.mountedRootfs);
      this.events.publish('TaskDelete', { container_id: t.id, pid: p.pid, exit_status: exit.status, exited_at: timestamp(exit.at), id: '' });
    }
    return { pid: p.pid, exit_status: exit.status, exited_at: timestamp(exit.at) };
  }

  private state(r: Req): object {
    const p = this.proc(r.id, r.exec_id);
    const t = this.task(r.id);
    return {
      id: p.execId || t.id, bundle: t.bundle, pid: p.pid, status: STATUS[p.status],
      stdin: p.paths.stdin, stdout: p.paths.stdout, stderr: p.paths.stderr, terminal: p.paths.terminal,
      exit_status: p.exit?.status ?? 0, exited_at: p.exit ? timestamp(p.exit.at) : undefined, exec_id: p.execId,
    };
  }

  private async wait(r: Req): Promise<object> {
    const p = this.proc(r.id, r.exec_id);
    await p.exited;
    return { exit_status: p.exit!.status, exited_at: timestamp(p.exit!.at) };
  }

  private exec(r: Req): undefined {
    const t = this.task(r.id);
    const execId = String(r.exec_id);
    if (!execId) throw new RpcError(Code.InvalidArgument, 'an exec needs an id');
    if (t.execs.has(execId)) throw new RpcError(Code.AlreadyExists, `exec ${execId} already exists`);
    if (t.init.status !== 'running') throw new RpcError(Code.FailedPrecondition, `task ${t.id} is not running`);
    let oci: OciProcess;
    try {
      oci = JSON.parse(Buffer.from(r.spec?.value ?? EMPTY).toString('utf8')) as OciProcess;
    } catch (err) {
      throw new RpcError(Code.InvalidArgument, `exec spec: ${(err as Error).message}`);
    }
    const io = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal === true };
    t.execs.set(execId, new ShimProcess(t.id, execId, { ...processSpec(oci, t.root, true), seccomp: t.seccomp }, io));
    this.events.publish('TaskExecAdded', { container_id: t.id, exec_id: execId });
    return undefined;
  }

  private pids(r: Req): object {
    const t = this.task(r.id);
    const procs = [t.init, ...t.execs.values()].filter((p) => p.status === 'running' || p.status === 'paused');
    return { processes: procs.map((p) => ({ pid: p.pid })) };
  }

  /** cgroups v2 Metrics of the task's processes in the guest (see ./stats.ts). */
  private async stats(id: string): Promise<object> {
    const t = this.task(id);
    const roots = [t.init, ...t.execs.values()].filter((p) => p.status === 'running').map((p) => p.guestPid);
    const metrics = containerMetrics(await this.pod.sandbox!.stats(), roots);
    return { stats: packAny('io.containerd.cgroups.v2.Metrics', metrics) };
  }

  /** New resources (CRI's UpdateContainerResources): the root's cgroup limits in the guest. */
  private async update(r: Req): Promise<undefined> {
    const t = this.task(r.id);
    let res: OciResources | undefined;
    try {
      res = r.resources?.value?.length ? (JSON.parse(Buffer.from(r.resources.value).toString('utf8')) as OciResources) : undefined;
    } catch (err) {
      throw new RpcError(Code.InvalidArgument, `Update's resources: ${(err as Error).message}`);
    }
    await this.pod.sandbox!.setLimits(t.root, limitsOf(res)).catch((err: Error) => Promise.reject(new RpcError(Code.Internal, `updating ${t.id}'s resources: ${err.message}`)));
    return undefined;
  }

  /** Pausing freezes the whole VM: allowed only while it holds just this task. */
  private async pause(id: string, pause: boolean): Promise<undefined> {
    const t = this.task(id);
    if (this.tasks.size !== 1) throw unimplemented('pausing one container of a pod with several');
    const want: ProcStatus = pause ? 'running' : 'paused';
    if (t.init.status !== want) throw new RpcError(Code.FailedPrecondition, `task ${id} is ${t.init.status}`);
    await (pause ? this.pod.sandbox!.pause() : this.pod.sandbox!.resume());
    for (const p of [t.init, ...t.execs.values()]) if (p.status === want) p.status = pause ? 'paused' : 'running';
    this.events.publish(pause ? 'TaskPaused' : 'TaskResumed', { container_id: id });
    return undefined;
  }

  private async shutdown(now: boolean): Promise<undefined> {
    if (this.tasks.size && !now) return undefined; // other containers of the pod still run here
    this.logger.info('shutting down');
    setImmediate(this.onShutdown);
    return undefined;
  }
}
