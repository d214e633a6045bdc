/**
 * One process running in the guest, as the host sees it: its stdio with the
 * guest's stdin window (backpressure), signals, resize, and its exit. Events
 * that arrive before the owner listens are held until `release()`.
 */
import { EventEmitter } from 'node:events';
import { AckBatcher, OutputCursor, type FrameSender } from './output-acks.js';
import { encodeTlv, MsgType, STDIN_WINDOW, Tag } from './protocol.js';

export type { FrameSender } from './output-acks.js';

export interface ProcessSpec {
  /** Name of the container root (as mounted with mountRoot). */
  root: string;
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  tty: boolean;
  stdin: boolean;
  rows?: number;
  cols?: number;
  /** Docker's capability names (the agent starts from Docker's default set and validates them). */
  capAdd?: string[];
  /** Extra groups (`--group-add`): names of the root's /etc/group, or numbers. */
  groupAdd?: string[];
  capDrop?: string[];
  /** Every capability, and /proc unmasked. */
  privileged?: boolean;
  /** A small init as PID 1 that forwards signals and reaps (`--init`). */
  init?: boolean;
  /** An exec: joins the PID namespace of the root's main process instead of starting one. */
  exec?: boolean;
  /**
   * Runs the agent's own busybox (ARGS[0] names the applet) instead of a
   * program of the image, chrooted into the root but in no container's PID
   * namespace, with every capability: the host's work on a root it does not
   * mount. 'mounts': the root as the container sees it; 'own-fs': the root's
   * own filesystem, without /proc, /dev, volumes and binds; 'upper' (a
   * root on block devices): the overlay's upper directory, the container's
   * writable layer; 'opaque': no program, the agent lists the upper
   * directory's opaque directories ("./a/b", each NUL-terminated).
   */
  tool?: ToolMode;
  /** A main process: sysctls ("key=value", written under the guest's /proc/sys), paths hidden, paths read-only. */
  sysctls?: string[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  /** A classic BPF seccomp program (struct sock_filter[], little endian), installed just before exec. */
  seccomp?: Buffer;
  noNewPrivs?: boolean;
  /**
   * The agent keeps the output (and exit) until the host acknowledges it, so a
   * host that dies loses none of it: the next one asks for it again (RESEND).
   * Whether the agent does is `GuestProcess.keeps` (an older agent does not).
   */
  keepOutput?: boolean;
}

/** A root's own cgroup limits (HB_LIMITS); a field left out is left as it is, 0 means none. */
export interface RootLimits {
  memoryBytes?: number;
  /** cpu.max: quota (or undefined: none) and period, in microseconds. */
  cpu?: { quotaUs?: number; periodUs: number };
  /** cpu.weight, 1..10000. */
  cpuWeight?: number;
  pids?: number;
}

/** T_TOOL's values (guest/PROTOCOL.md). */
export const TOOL_MODES = { mounts: 1, 'own-fs': 2, upper: 3, opaque: 4 } as const;
export type ToolMode = keyof typeof TOOL_MODES;

/** IPv4 setup of the guest's eth0: "a.b.c.d/prefix", gateway and DNS server. */
export interface GuestNetwork {
  ipv4: string;
  gateway: string;
  dns: string;
  /** eth0's MAC, "aa:bb:cc:dd:ee:ff" (clones of one template share the template's otherwise). */
  mac?: string;
}

export interface ExitStatus {
  code: number;
  signal: number;
  /** The guest's memory cgroup OOM-killed a process while this one ran. */
  oomKilled?: boolean;
}

/** Error from the guest while starting a process: errno plus Docker-worded message. */
export class StartError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** One process running in the guest, as seen from the host. */
export class GuestProcess extends EventEmitter<{
  /** Output, with the position it ends at (guest/PROTOCOL.md, "Output kept until acknowledged"). */
  stdout: [Buffer, number];
  stderr: [Buffer, number];
  exit: [ExitStatus];
  /** A re-attach found output missing between what the host had and what the agent kept (bytes). */
  gap: [number];
}> {
  pid = 0;
  exited: ExitStatus | undefined;
  /** The agent keeps this process's output until acknowledged. */
  keeps = false;
  /** Output positions: where the host is, and what it acknowledged. */
  private cursor = new OutputCursor();
  private acks: AckBatcher | undefined;
  /** The owner acknowledges (`ack`) once the output is safe (in a log file); else it is acknowledged on receipt. */
  private ownerAcks = false;
  /** Output and exit that arrive before the owner has attached its listeners
   * (they can come in the same read as STARTED) are held until `release()`. */
  private held: Array<() => void> | undefined = [];
  private credit = STDIN_WINDOW;
  private pending: Buffer[] = [];
  private eofPending = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    readonly id: number,
    private readonly conn: FrameSender,
  ) {
    super();
  }

  /** Queues stdin bytes; they are sent as the guest's window allows. Resolves
   * when the bytes have been handed to the channel (for backpressure). */
  write(data: Buffer): Promise<void> {
    if (this.exited) return Promise.resolve();
    this.pending.push(data);
    this.pump();
    if (this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  endStdin(): void {
    this.eofPending = true;
    this.pump();
  }

  signal(signo: number): void {
    this.conn.send(MsgType.Signal, this.id, encodeTlv([[Tag.Signal, signo]]));
  }

  resize(rows: number, cols: number): void {
    this.conn.send(MsgType.Resize, this.id, encodeTlv([[Tag.Rows, rows], [Tag.Cols, cols]]));
  }

  /**
   * The agent keeps this process's output until acknowledged. RESUME_FROM (a
   * re-attach): the host has the output up to there; the agent is asked to
   * resend the rest, and what it sends before that answer is dropped.
   */
  keepOutput(resumeFrom?: number): void {
    this.keeps = true;
    this.acks = new AckBatcher(this.conn, this.id, resumeFrom ?? 0);
    if (resumeFrom === undefined) return;
    this.cursor = new OutputCursor(resumeFrom, true);
    this.conn.send(MsgType.Resend, this.id, encodeTlv([[Tag.Offset, BigInt(resumeFrom)]]));
  }

  /** From now on the owner acknowledges output with `ack` (call before `release()`). */
  ackByOwner(): void {
    this.ownerAcks = true;
  }

  /** Acknowledges the output up to POSITION (cumulative; batched per event-loop turn). */
  ack(position: number): void {
    this.acks?.ack(position);
  }

  /** Acknowledges everything, the exit included: the owner has recorded it. */
  ackExit(): void {
    if (this.exited) this.acks?.ack(this.cursor.position + 1);
  }

  /** A STDOUT or STDERR payload from the channel. */
  output(stream: 'stdout' | 'stderr', payload: Buffer): void {
    const data = this.cursor.take(payload);
    if (!data) return;
    const position = this.cursor.position;
    this.deliver(() => {
      if (!this.ownerAcks) this.ack(position);
      this.emit(stream, data, position);
    });
  }

  /** Whether an EXIT now is one to drop (it comes again after RESENT). */
  get resyncing(): boolean {
    return this.cursor.waiting;
  }

  /** RESENT: the resend starts at FROM, or (ERRNO) the agent has nothing for this process. */
  resent(from: number | undefined, errno: number): void {
    if (from === undefined) {
      this.cursor.giveUp();
      // ESRCH: the agent does not know it (gone with an exit nobody recorded).
      if (errno === 3) this.finish({ code: 137, signal: 0 });
      return;
    }
    const lost = this.cursor.resent(from);
    if (lost) this.deliver(() => this.emit('gap', lost));
  }

  /** Delivers held events; from now on events are emitted as they come. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const deliver of held) deliver();
  }

  /** Emits now, or holds the event until `release()`. */
  deliver(fn: () => void): void {
    if (this.held) this.held.push(fn);
    else fn();
  }

  /** Called when the guest acknowledges consumed stdin. */
  grant(count: number): void {
    this.credit = Math.min(STDIN_WINDOW, this.credit + count);
    this.pump();
  }

  private pump(): void {
    while (this.pending.length && this.credit > 0) {
      const head = this.pending[0]!;
      const n = Math.min(head.length, this.credit, 32768);
      this.conn.send(MsgType.Stdin, this.id, head.subarray(0, n));
      this.credit -= n;
      if (n === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
    if (this.pending.length === 0) {
      if (this.eofPending) {
        this.eofPending = false;
        this.conn.send(MsgType.StdinEof, this.id);
      }
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  finish(status: ExitStatus): void {
    if (this.exited) return;
    this.exited = status;
    for (const w of this.drainWaiters.splice(0)) w();
    this.deliver(() => {
      if (!this.ownerAcks) this.ackExit();
      this.emit('exit', status);
    });
  }
}

