/**
 * One process of a task as the shim tracks it: a container's init or an exec,
 * from created to stopped, with its stdio carried between containerd's FIFOs
 * and the guest process, and its exit kept for Wait, State and Delete.
 */
import type { GuestProcess, ProcessSpec, Sandbox } from '../sandbox/index.js';
import { finishIo, openIo, type ProcessIo } from './fifo-io.js';
import { Code, RpcError } from './ttrpc.js';

export interface IoPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export type ProcStatus = 'created' | 'running' | 'paused' | 'stopped';

export interface ExitInfo {
  status: number;
  at: Date;
}

/** How long stdin may still deliver bytes after CloseIO before EOF is sent (see closeStdin). */
const STDIN_DRAIN_QUIET_MS = 50;

export class ShimProcess {
  status: ProcStatus = 'created';
  pid = 0;
  /** Its pid in the guest (the init's `pid` is its VM's, the host process that runs it). */
  guestPid = 0;
  exit: ExitInfo | undefined;
  /** The guest's memory cgroup OOM-killed a process of its container while it ran. */
  oomKilled = false;
  private guest: GuestProcess | undefined;
  private io: ProcessIo | undefined;
  private stdinClosed = false;
  private lastStdin = 0;
  private resolveExit!: () => void;
  readonly exited = new Promise<void>((r) => (this.resolveExit = r));

  constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly spec: ProcessSpec,
    readonly paths: IoPaths,
  ) {}

  /** Starts it in SANDBOX; ONEXIT runs once its output is flushed and its exit recorded. */
  async start(sandbox: Sandbox, onExit: (p: ShimProcess) => void): Promise<number> {
    if (this.status !== 'created') throw new RpcError(Code.FailedPrecondition, `process ${this.execId || this.containerId} is ${this.status}, not created`);
    this.io = openIo(this.paths, this.paths.terminal);
    let guest: GuestProcess;
    try {
      guest = await sandbox.exec({ ...this.spec, stdin: !!this.io.stdin, tty: this.paths.terminal });
    } catch (err) {
      void finishIo(this.io);
      throw new RpcError(Code.Unknown, `starting ${this.spec.args[0]}: ${(err as Error).message}`);
    }
    this.guest = guest;
    this.guestPid = guest.pid;
    this.pid = this.pid || guest.pid;
    this.status = 'running';
    const { stdin, stdout, stderr } = this.io;
    guest.on('stdout', (b) => stdout?.write(b));
    guest.on('stderr', (b) => (stderr ?? stdout)?.write(b));
    guest.on('exit', (st) => {
      this.oomKilled = st.oomKilled === true;
      void finishIo(this.io!).then(() => {
        this.finish(st.signal ? 128 + st.signal : st.code);
        onExit(this);
      });
    });
    if (stdin) {
      stdin.on('data', (b: Buffer) => {
        this.lastStdin = Date.now();
        stdin.pause();
        void guest.write(b).then(() => stdin.resume());
      });
    }
    if (this.stdinClosed) this.closeStdin();
    guest.release();
    return this.pid;
  }

  /** Records an exit without a guest process (killed before it started). */
  finish(status: number): void {
    if (this.exit) return;
    this.exit = { status, at: new Date() };
    this.status = 'stopped';
    this.resolveExit();
  }

  signal(signo: number): void {
    if (this.status === 'stopped') throw new RpcError(Code.NotFound, `process ${this.execId || this.containerId} has already exited`);
    if (!this.guest) {
      this.finish(128 + signo); // a process that never ran dies of the signal (as with runc)
      return;
    }
    this.guest.signal(signo);
  }

  resize(rows: number, cols: number): void {
    this.guest?.resize(rows, cols);
  }

  /**
   * containerd's stdin is done (its writer closed). We hold the FIFO's write
   * side too (so a FIFO without writer does not read as EOF early), so bytes
   * still in the pipe are read until it has been quiet a moment, then EOF goes.
   */
  closeStdin(): void {
    this.stdinClosed = true;
    const guest = this.guest;
    if (!guest) return;
    const check = () => {
      if (Date.now() - this.lastStdin < STDIN_DRAIN_QUIET_MS || this.io?.stdin?.isPaused()) setTimeout(check, STDIN_DRAIN_QUIET_MS);
      else {
        this.io?.stdin?.destroy();
        guest.endStdin();
      }
    };
    setTimeout(check, STDIN_DRAIN_QUIET_MS);
  }
}
