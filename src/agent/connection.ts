/**
 * A connection to one guest's agent over the virtio-serial chardev socket.
 *
 * The guest is untrusted: a malformed frame, a version mismatch or a flood of
 * unexpected messages closes the channel (the VM is then treated as dead); a guest
 * that does not answer makes requests time out. Nothing a guest sends can throw
 * out of this class or block the daemon.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseStats, type GuestStats } from './stats.js';
import {
  encodeFrame,
  encodeTlv,
  Fields,
  FrameDecoder,
  MsgType,
  ProtocolError,
  STDIN_WINDOW,
  Tag,
  type Frame,
  type TlvValue,
} from './protocol.js';

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
}

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
  stdout: [Buffer];
  stderr: [Buffer];
  exit: [ExitStatus];
}> {
  pid = 0;
  exited: ExitStatus | undefined;
  /** Output and exit that arrive before the owner has attached its listeners
   * (they can come in the same read as STARTED) are held until `release()`. */
  private held: Array<() => void> | undefined = [];
  private credit = STDIN_WINDOW;
  private pending: Buffer[] = [];
  private eofPending = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    readonly id: number,
    private readonly conn: AgentConnection,
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
    this.deliver(() => this.emit('exit', status));
  }
}

interface Pending {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  /** Timed out: its answer, when it comes, is dropped. */
  abandoned?: boolean;
}

/** How long a request (configure, mount, stats) may take before it fails. */
const REQUEST_TIMEOUT_MS = 15_000;
/** How long the agent may take to answer a START (fork, exec, setns in the guest). */
const START_TIMEOUT_MS = 30_000;
/** Unanswered requests after which the guest is considered gone. */
const MAX_ABANDONED = 16;

/** A request the guest did not answer in time (the channel stays open). */
export class AgentTimeoutError extends Error {}

export interface ConnectOptions {
  signal?: AbortSignal;
  /** How long to wait for the guest to say hello. */
  timeoutMs: number;
  /**
   * Processes a previous daemon started in this guest (live restore). They are
   * registered before the first byte is read, so output and exits the agent
   * kept while no host was connected reach them, held until `release()`.
   */
  adopt?: number[];
}

export class AgentConnection extends EventEmitter<{ close: [Error | undefined] }> {
  agentBuild = '';
  closed = false;
  private decoder = new FrameDecoder();
  private results: Pending[] = [];
  private starting = new Map<number, { proc: GuestProcess } & Pending>();
  private procs = new Map<number, GuestProcess>();
  private nextProc = 1;
  private hello: ((build: string) => void) | undefined;

  private constructor(private readonly sock: net.Socket) {
    super();
    sock.on('data', (chunk) => this.onData(chunk));
    sock.on('error', (err) => this.shutdown(err));
    sock.on('close', () => this.shutdown(new Error('agent channel closed')));
  }

  /** Connects to QEMU's chardev socket (retrying until it exists) and waits for
   * the agent: either its HELLO, or a PONG to our PING if it said hello before
   * we were connected (always the case for a restored clone). */
  static async connect(path: string, opts: ConnectOptions): Promise<AgentConnection> {
    const deadline = Date.now() + opts.timeoutMs;
    let sock: net.Socket | undefined;
    while (!sock) {
      opts.signal?.throwIfAborted();
      try {
        sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`agent socket ${path}: ${(err as Error).message}`);
        await sleep(5);
      }
    }
    const conn = new AgentConnection(sock);
    for (const id of opts.adopt ?? []) {
      const proc = new GuestProcess(id, conn);
      conn.procs.set(id, proc);
      conn.adoptedProcs.set(id, proc);
      // Ids the old daemon may have used for execs are skipped.
      conn.nextProc = Math.max(conn.nextProc, id + 1 + 1_000_000);
    }
    const ready = new Promise<string>((resolve) => (conn.hello = resolve));
    conn.send(MsgType.Ping, 0);
    const timer = setTimeout(() => conn.shutdown(new Error('guest agent did not answer in time')), Math.max(0, deadline - Date.now()));
    const onAbort = () => conn.shutdown(new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([
        ready,
        new Promise((_, reject) => conn.once('close', (err) => reject(err ?? new Error('agent channel closed')))),
      ]);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    return conn;
  }

  send(type: number, proc: number, payload?: Buffer): void {
    if (this.closed) return;
    this.sock.write(encodeFrame(type, proc, payload));
  }

  /**
   * Sends a request and waits for its RESULT. Results come back in order, so a
   * request that times out keeps its place in the queue (its late answer is
   * consumed and dropped) and only this request fails: a slow guest (a STATS
   * under load) is not a dead one. A guest that leaves too many requests
   * unanswered is: its channel closes.
   */
  private request(type: number, fields: Array<[number, TlvValue]>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('agent channel closed'));
      const slot: Pending = {
        resolve: (f) => (clearTimeout(timer), resolve(f)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      const timer = setTimeout(() => {
        slot.resolve = () => undefined;
        slot.reject = () => undefined;
        slot.abandoned = true;
        reject(new AgentTimeoutError(`guest agent did not answer in ${timeoutMs} ms`));
        if (this.results.filter((p) => p.abandoned).length > MAX_ABANDONED) this.shutdown(new Error('guest agent stopped answering requests'));
      }, timeoutMs);
      this.results.push(slot);
      this.send(type, 0, encodeTlv(fields));
    });
  }

  private async checkedRequest(type: number, fields: Array<[number, TlvValue]>): Promise<void> {
    const f = Fields.of((await this.request(type, fields)).payload);
    const errno = f.u32(Tag.Errno) ?? 0;
    if (errno !== 0) throw new Error(f.str(Tag.Message, 512) ?? `guest error ${errno}`);
  }

  /** Refreshes what a template snapshot froze: clock, RNG, hostname. */
  configure(opts: { hostname: string; seed: Buffer; network?: GuestNetwork; memoryLimit?: number }): Promise<void> {
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const fields: Array<[number, TlvValue]> = [
      [Tag.Hostname, opts.hostname],
      [Tag.Time, nowNs],
      [Tag.Seed, opts.seed],
    ];
    if (opts.memoryLimit) fields.push([Tag.MemLimit, BigInt(opts.memoryLimit)]);
    if (opts.network) fields.push([Tag.Ipv4, opts.network.ipv4], [Tag.Gateway, opts.network.gateway], [Tag.Dns, opts.network.dns]);
    if (opts.network?.mac) fields.push([Tag.Mac, Buffer.from(opts.network.mac.split(':').map((h) => parseInt(h, 16)))]);
    return this.checkedRequest(MsgType.Configure, fields);
  }

  /** Mounts the 9p share TAG as container root NAME (or its SUBDIR, for pool VMs). */
  mountRoot(tag: string, name: string, subdir?: string, tmpfs: string[] = [], opts: { isolate?: boolean } = {}): Promise<void> {
    const fields: Array<[number, TlvValue]> = [
      [Tag.MountTag, tag],
      [Tag.Name, name],
    ];
    if (subdir) fields.push([Tag.Subdir, subdir]);
    if (opts.isolate) fields.push([Tag.Isolate, 1]);
    for (const t of tmpfs) fields.push([Tag.Tmpfs, t]);
    return this.checkedRequest(MsgType.MountRoot, fields);
  }

  /** A process registered with `adopt` when connecting. */
  adopted(id: number): GuestProcess | undefined {
    return this.adoptedProcs.get(id);
  }
  private adoptedProcs = new Map<number, GuestProcess>();

  /** A snapshot of the guest's memory, CPU time and processes (top, stats). */
  async stats(timeoutMs = 5000): Promise<GuestStats> {
    const frame = await this.request(MsgType.Stats, [], timeoutMs);
    return parseStats(frame.payload);
  }

  /** Starts a process. Its events are held until the caller calls `release()`
   * on it, after attaching its listeners, so no early output is lost. */
  async start(spec: ProcessSpec, timeoutMs = START_TIMEOUT_MS): Promise<GuestProcess> {
    const id = this.nextProc++;
    const proc = new GuestProcess(id, this);
    const fields: Array<[number, TlvValue]> = [
      [Tag.Name, spec.root],
      [Tag.Cwd, spec.cwd || '/'],
      [Tag.User, spec.user],
      [Tag.Tty, spec.tty],
      [Tag.Stdin, spec.stdin],
      ...spec.args.map((a): [number, TlvValue] => [Tag.Arg, a]),
      ...spec.env.map((e): [number, TlvValue] => [Tag.Env, e]),
    ];
    if (spec.rows) fields.push([Tag.Rows, spec.rows]);
    if (spec.cols) fields.push([Tag.Cols, spec.cols]);
    const frame = await new Promise<Frame>((resolve, reject) => {
      if (this.closed) return reject(new Error('agent channel closed'));
      // A start the guest does not answer fails after a while; if the process
      // starts after all, it is killed when its STARTED arrives (see dispatch).
      const timer = setTimeout(() => {
        const entry = this.starting.get(id);
        if (!entry) return;
        entry.abandoned = true;
        entry.resolve = () => undefined;
        entry.reject = () => undefined;
        reject(new AgentTimeoutError(`guest agent did not start the process in ${timeoutMs} ms`));
      }, timeoutMs);
      this.starting.set(id, {
        proc,
        resolve: (f) => (clearTimeout(timer), resolve(f)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.send(MsgType.Start, id, encodeTlv(fields));
    });
    const f = Fields.of(frame.payload);
    if (frame.type === MsgType.StartFailed) {
      throw new StartError(f.u32(Tag.Errno) ?? 0, f.str(Tag.Message, 1024) ?? 'process start failed');
    }
    proc.pid = f.u32(Tag.Pid) ?? 0;
    return proc;
  }

  poweroff(): void {
    this.send(MsgType.Poweroff, 0);
  }

  close(): void {
    this.shutdown(undefined);
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
      for (const f of frames) this.dispatch(f);
    } catch (err) {
      this.shutdown(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private dispatch(f: Frame): void {
    switch (f.type) {
      case MsgType.Hello:
      case MsgType.Pong: {
        const build = f.type === MsgType.Hello ? (Fields.of(f.payload).str(Tag.Message, 64) ?? '') : '';
        if (build) this.agentBuild = build;
        this.hello?.(build);
        this.hello = undefined;
        return;
      }
      case MsgType.Result: {
        const p = this.results.shift();
        if (!p) throw new ProtocolError('guest sent a result nobody asked for');
        return p.resolve(f);
      }
      case MsgType.Started:
      case MsgType.StartFailed: {
        const s = this.starting.get(f.proc);
        if (!s) throw new ProtocolError(`guest answered a start for unknown process ${f.proc}`);
        this.starting.delete(f.proc);
        if (s.abandoned) {
          // Its caller gave up: a process that started late must not run unowned.
          if (f.type === MsgType.Started) this.send(MsgType.Signal, f.proc, encodeTlv([[Tag.Signal, 9]]));
          return;
        }
        if (f.type === MsgType.Started) this.procs.set(f.proc, s.proc);
        return s.resolve(f);
      }
      case MsgType.Stdout:
      case MsgType.Stderr: {
        const p = this.procs.get(f.proc);
        const stream = f.type === MsgType.Stdout ? 'stdout' : 'stderr';
        if (p) p.deliver(() => p.emit(stream, f.payload));
        return;
      }
      case MsgType.StdinWindow: {
        const n = Fields.of(f.payload).u32(Tag.Count) ?? 0;
        this.procs.get(f.proc)?.grant(n);
        return;
      }
      case MsgType.Exit: {
        const p = this.procs.get(f.proc);
        if (!p) return;
        const fields = Fields.of(f.payload);
        const code = Math.min(fields.u32(Tag.Status) ?? 255, 255);
        const signal = Math.min(fields.u32(Tag.Signal) ?? 0, 64);
        this.procs.delete(f.proc);
        p.finish({ code, signal, oomKilled: fields.u32(Tag.Oom) === 1 });
        return;
      }
      default:
        throw new ProtocolError(`guest sent unknown message type ${f.type}`);
    }
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    const e = err ?? new Error('agent channel closed');
    for (const p of this.results.splice(0)) p.reject(e);
    for (const s of this.starting.values()) s.reject(e);
    this.starting.clear();
    this.emit('close', err);
  }

  /** Processes still running when the channel closed (the VM died). */
  orphans(): GuestProcess[] {
    const list = [...this.procs.values()];
    this.procs.clear();
    return list;
  }
}
