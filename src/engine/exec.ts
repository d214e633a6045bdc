/**
 * `exec`: further processes in a running container, started by the agent in the
 * container's root (and mount and PID namespaces, with its capabilities), with
 * their own stdio and exit code.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { StartError, type GuestProcess } from '../agent/connection.js';
import { conflict, invalid, notFound } from '../common/errors.js';
import type { Attachment, Container } from './container.js';
import { ROOT_NAME } from '../sandbox/sandbox.js';

export interface ExecConfig {
  Cmd: string[];
  Env: string[];
  User: string;
  WorkingDir: string;
  Tty: boolean;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  ConsoleSize?: [number, number];
  /** Docker's detach keys for a tty exec ("ctrl-p,ctrl-q" unless given). */
  DetachKeys?: string;
}

export interface ExecRecord {
  ID: string;
  ContainerID: string;
  Config: ExecConfig;
  Running: boolean;
  ExitCode: number | null;
  Pid: number;
  proc?: GuestProcess;
  done: Promise<void>;
  markDone: () => void;
}

/** What exec needs from the engine. */
export interface ExecHost {
  get(idOrName: string): Container;
  processEnv(c: Container, extra?: string[]): string[];
  containerEvent(c: Container, action: string, extra?: Record<string, string>): void;
}

/** Client input to a guest process, with backpressure from the guest's stdin window. */
export function forwardStdin(input: Readable, proc: GuestProcess, onEnd: () => void): void {
  input.on('data', (chunk: Buffer) => {
    input.pause();
    void proc.write(chunk).then(() => input.resume());
  });
  input.once('end', onEnd);
}

export class ExecManager {
  private readonly execs = new Map<string, ExecRecord>();

  constructor(private readonly host: ExecHost) {}

  create(idOrName: string, config: ExecConfig): ExecRecord {
    const c = this.host.get(idOrName);
    if (!c.running) throw conflict(`container ${c.id} is not running`);
    // a paused guest runs nothing, its agent included (dockerd's words)
    if (c.record.State.Paused) throw conflict(`Container ${c.id} is paused, unpause the container before exec`);
    if (!config.Cmd.length) throw invalid('No exec command specified');
    let markDone!: () => void;
    const done = new Promise<void>((r) => (markDone = r));
    const e: ExecRecord = { ID: randomBytes(32).toString('hex'), ContainerID: c.id, Config: config, Running: false, ExitCode: null, Pid: 0, done, markDone };
    this.execs.set(e.ID, e);
    this.host.containerEvent(c, `exec_create: ${config.Cmd.join(' ')}`);
    return e;
  }

  get(id: string): ExecRecord {
    const e = this.execs.get(id);
    if (!e) throw notFound(`No such exec instance: ${id}`);
    return e;
  }

  /** Starts an exec'd process. Output goes to the attachment; the promise
   * resolves once the process started (its exit is signalled by `end`). */
  async start(id: string, a: Attachment): Promise<void> {
    const e = this.get(id);
    if (e.Running || e.ExitCode !== null) throw conflict(`exec ${id} has already been started`);
    const c = this.host.get(e.ContainerID);
    if (c.running && c.record.State.Paused) throw conflict(`Container ${c.id} is paused, unpause the container before exec`);
    if (!c.sandbox || !c.main) throw conflict(`container ${c.id} is not running`);
    const cfg = e.Config;
    const [rows, cols] = cfg.ConsoleSize ?? [0, 0];
    e.Running = true;
    let proc: GuestProcess;
    try {
      proc = await c.sandbox.agent.start({
        root: c.record.PodId ? c.id.slice(0, 12) : ROOT_NAME,
        args: cfg.Cmd,
        env: this.host.processEnv(c, [...cfg.Env, ...(cfg.Tty ? ['TERM=xterm'] : [])]),
        cwd: cfg.WorkingDir || c.record.Config.WorkingDir,
        user: cfg.User || c.record.Config.User,
        tty: cfg.Tty,
        stdin: cfg.AttachStdin,
        rows,
        cols,
        // the container's capabilities, in its PID namespace
        capAdd: c.record.HostConfig.CapAdd,
        groupAdd: c.record.HostConfig.GroupAdd,
        capDrop: c.record.HostConfig.CapDrop,
        privileged: c.record.HostConfig.Privileged,
        exec: true,
      });
    } catch (err) {
      e.Running = false;
      if (err instanceof StartError) {
        e.ExitCode = /executable file not found|no such file or directory/.test(err.message) ? 127 : 126;
        e.markDone();
        throw invalid(`OCI runtime exec failed: exec failed: unable to start container process: ${err.message}: unknown`);
      }
      e.ExitCode = 126;
      e.markDone();
      throw err;
    }
    e.proc = proc;
    e.Pid = proc.pid;
    proc.on('stdout', (d) => a.stdout?.(d));
    proc.on('stderr', (d) => a.stderr?.(d));
    proc.on('exit', (st) => {
      // Recorded before the stream ends: the CLI reads the exit code right after.
      e.ExitCode = st.code;
      e.Running = false;
      e.markDone();
      a.end();
      this.host.containerEvent(c, 'exec_die', { execID: e.ID, exitCode: String(st.code) });
    });
    if (a.stdin) forwardStdin(a.stdin, proc, () => proc.endStdin());
    proc.release();
    this.host.containerEvent(c, `exec_start: ${cfg.Cmd.join(' ')}`);
  }

  resize(id: string, rows: number, cols: number): void {
    const e = this.get(id);
    if (!e.proc || !e.Running) throw conflict(`exec ${id} is not running`);
    if (e.Config.Tty) e.proc.resize(rows, cols);
  }

  /** The container stopped: its execs are over (137 if they had no exit code yet). */
  containerExited(containerId: string): void {
    for (const e of this.execs.values()) {
      if (e.ContainerID === containerId && e.Running) {
        e.Running = false;
        e.ExitCode ??= 137;
        e.markDone();
      }
    }
  }

  /** The container is gone: so are its execs. */
  forget(containerId: string): void {
    for (const [id, e] of this.execs) if (e.ContainerID === containerId) this.execs.delete(id);
  }
}
