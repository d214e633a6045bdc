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
import { connectWhenReady } from '../common/unix-socket.js';
import { parseStats, type GuestStats } from './stats.js';

export { GuestProcess, StartError, type ExitStatus, type GuestNetwork, type ProcessSpec, type RootLimits } from './process.js';
import { GuestProcess, StartError, TOOL_MODES, type GuestNetwork, type ProcessSpec, type RootLimits } from './process.js';
import {
  encodeFrame,
  encodeTlv,
  Fields,
  FrameDecoder,
  MsgType,
  ProtocolError,
  Tag,
  type Frame,
  type TlvValue,
} from './protocol.js';

interface Pending {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  /** Timed out: its answer, when it comes, is dropped. */
  abandoned?: boolean;
}

export interface MountOptions {
  /** A mount namespace of its own (pod members). */
  isolate?: boolean;
  /** Extra /etc/hosts lines, "IP NAME" (`--add-host`). */
  hosts?: string[];
  /**
   * A root on block devices: an overlay of the read-only image filesystem (erofs
   * or ext4) on the virtio-blk disk with serial `lower` and the writable ext4 disk
   * with serial `upper` (QEMU's `serial=`; names of at most 20 characters). The
   * 9p TAG is then needed only for `binds` (pass '' otherwise). `discardOnExit`:
   * the host deletes the writable disk once the main process exits (`run --rm`),
   * so the agent does not sync it before reporting that exit. `premounted`: the
   * writable disk is a copy of the one the VM's template mounted ahead, which the
   * agent then moves under the root instead of mounting the disk.
   */
  block?: { lower: string; upper: string; discardOnExit?: boolean; premounted?: boolean };
  /** Binds of the 9p share TAG's `source` (one name under it) at `dest` (an absolute
   * path inside the root), nosuid,nodev, read-only if `readonly`. A pod's root (subdir)
   * or a block root only; at most 64. */
  binds?: Array<{ source: string; dest: string; readonly?: boolean }>;
  /** The root's own mount read-only once prepared (Docker's --read-only). */
  readonly?: boolean;
}

/** The agent's bound on BIND fields in one MOUNT_ROOT. */
export const MAX_BINDS = 64;

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
  /** Of those, the ones whose output the agent keeps, with the position the host has (its log): the rest is resent. */
  resume?: Map<number, number>;
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
    const sock = await connectWhenReady(path, deadline, { signal: opts.signal, what: 'agent socket' });
    const conn = new AgentConnection(sock);
    for (const id of opts.adopt ?? []) {
      const proc = new GuestProcess(id, conn);
      conn.procs.set(id, proc);
      conn.adoptedProcs.set(id, proc);
      // Ids the old daemon may have used for execs are skipped.
      conn.nextProc = Math.max(conn.nextProc, id + 1 + 1_000_000);
      const from = opts.resume?.get(id);
      if (from !== undefined) proc.keepOutput(from);
    }
    const ready = new Promise<string>((resolve) => (conn.hello = resolve));
    conn.send(MsgType.Ping, 0);
    const timer = setTimeout(() => conn.shutdown(new Error('guest agent did not answer in time')), Math.max(0, deadline - Date.now()));
    const onAbort = () => conn.shutdown(new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const closed = new Promise((_, reject) => conn.once('close', (err) => reject(err ?? new Error('agent channel closed'))));
      // aborted while the socket was connecting: the listener came too late
      if (opts.signal?.aborted) onAbort();
      await Promise.race([ready, closed]);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    return conn;
  }

  private holders = new Set<object>();

  /**
   * Backpressure on the guest's output: while any HOLDER holds (a container log
   * whose writer is behind), the channel is not read. QEMU then stops draining
   * the virtio port, the agent's writes block, and the guest's processes block
   * on their pipes: nothing is lost and nothing piles up in the daemon. Frames
   * already read are still delivered.
   */
  hold(holder: object, on: boolean): void {
    if (on) this.holders.add(holder);
    else this.holders.delete(holder);
    if (this.closed) return;
    if (this.holders.size) this.sock.pause();
    else this.sock.resume();
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
    if (opts.network?.mac) fields.push([Tag.Mac, macBytes(opts.network.mac)]);
    return this.checkedRequest(MsgType.Configure, fields);
  }

  /** A VM that moved to another host's bridge: eth0 takes NETWORK, root NAME's /etc/hosts (HOSTS: "IP NAME" lines) and resolv.conf follow. */
  readdress(name: string, network: GuestNetwork, hosts: string[]): Promise<void> {
    const fields: Array<[number, TlvValue]> = [[Tag.Name, name], [Tag.Ipv4, network.ipv4], [Tag.Gateway, network.gateway], [Tag.Dns, network.dns]];
    if (network.mac) fields.push([Tag.Mac, macBytes(network.mac)]);
    for (const h of hosts) fields.push([Tag.ExtraHost, h]);
    return this.checkedRequest(MsgType.Readdress, fields);
  }

  /** A template's step: the agent mounts the ext4 of the disk with serial UPPER ahead (upper/ and work/ made, synced). */
  premountUpper(upper: string): Promise<void> {
    return this.checkedRequest(MsgType.MountRoot, [[Tag.Name, 'premount'], [Tag.BlockUpper, upper], [Tag.Premount, 1]]);
  }

  /** Mounts the 9p share TAG as container root NAME (or its SUBDIR, for pool VMs),
   * or (`opts.block`) an overlay of two virtio-blk disks. */
  mountRoot(tag: string, name: string, subdir?: string, tmpfs: string[] = [], opts: MountOptions = {}): Promise<void> {
    const fields: Array<[number, TlvValue]> = [];
    if (tag || !opts.block) fields.push([Tag.MountTag, tag]);
    fields.push([Tag.Name, name]);
    if (subdir) fields.push([Tag.Subdir, subdir]);
    if (opts.block) fields.push([Tag.BlockLower, opts.block.lower], [Tag.BlockUpper, opts.block.upper]);
    if (opts.block?.discardOnExit) fields.push([Tag.DiscardOnExit, 1]);
    if (opts.block?.premounted) fields.push([Tag.Premounted, 1]);
    if ((opts.binds?.length ?? 0) > MAX_BINDS) return Promise.reject(new Error(`at most ${MAX_BINDS} binds per root`));
    for (const b of opts.binds ?? []) {
      if (/[\t\n\0]/.test(b.source + b.dest)) return Promise.reject(new Error(`bad bind ${JSON.stringify(b)}`));
      fields.push([Tag.Bind, `${b.source}\t${b.dest}${b.readonly ? '\tro' : ''}`]);
    }
    if (opts.readonly) fields.push([Tag.ReadOnly, 1]);
    if (opts.isolate) fields.push([Tag.Isolate, 1]);
    for (const t of tmpfs) fields.push([Tag.Tmpfs, t]);
    for (const h of opts.hosts ?? []) fields.push([Tag.ExtraHost, h]);
    return this.checkedRequest(MsgType.MountRoot, fields);
  }

  /** Sets the cgroup limits of root NAME (its processes started from now on join that cgroup). */
  setLimits(name: string, l: RootLimits): Promise<void> {
    const fields: Array<[number, TlvValue]> = [[Tag.Name, name]];
    if (l.memoryBytes !== undefined) fields.push([Tag.MemLimit, BigInt(l.memoryBytes)]);
    if (l.cpu) fields.push([Tag.CpuMax, `${l.cpu.quotaUs ?? 'max'} ${l.cpu.periodUs}`]);
    if (l.cpuWeight) fields.push([Tag.CpuWeight, l.cpuWeight]);
    if (l.pids !== undefined) fields.push([Tag.PidsMax, l.pids]);
    return this.checkedRequest(MsgType.Limits, fields);
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
    for (const c of spec.capAdd ?? []) fields.push([Tag.CapAdd, c]);
    for (const g of spec.groupAdd ?? []) fields.push([Tag.GroupAdd, g]);
    for (const c of spec.capDrop ?? []) fields.push([Tag.CapDrop, c]);
    if (spec.privileged) fields.push([Tag.Privileged, 1]);
    if (spec.init) fields.push([Tag.Init, 1]);
    if (spec.exec) fields.push([Tag.Exec, 1]);
    if (spec.tool) fields.push([Tag.Tool, TOOL_MODES[spec.tool]]);
    for (const kv of spec.sysctls ?? []) fields.push([Tag.Sysctl, kv]);
    for (const p of spec.maskedPaths ?? []) fields.push([Tag.MaskPath, p]);
    for (const p of spec.readonlyPaths ?? []) fields.push([Tag.RoPath, p]);
    if (spec.seccomp) fields.push([Tag.Seccomp, spec.seccomp]);
    if (spec.noNewPrivs) fields.push([Tag.NoNewPrivs, 1]);
    if (spec.keepOutput) fields.push([Tag.Acked, 1]);
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
    if (spec.keepOutput && f.u32(Tag.Acked) === 1) proc.keepOutput();
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
        p?.output(f.type === MsgType.Stdout ? 'stdout' : 'stderr', f.payload);
        return;
      }
      case MsgType.Resent: {
        const fields = Fields.of(f.payload);
        this.procs.get(f.proc)?.resent(fields.u64(Tag.Offset), fields.u32(Tag.Errno) ?? 0);
        return;
      }
      case MsgType.StdinWindow: {
        const n = Fields.of(f.payload).u32(Tag.Count) ?? 0;
        this.procs.get(f.proc)?.grant(n);
        return;
      }
      case MsgType.Exit: {
        const p = this.procs.get(f.proc);
        // Before the answer to RESEND: it comes again, after the output kept before it.
        if (!p || p.resyncing) return;
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
const macBytes = (mac: string): Buffer => Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
