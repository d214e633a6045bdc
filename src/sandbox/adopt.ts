/**
 * Live restore: the sandbox of a VM that outlived the process that started it.
 * The VM is re-found by pid and run directory, its agent answers again, and the
 * given processes are adopted (their output and exit, kept by the agent
 * meanwhile, are delivered).
 *
 * The hypervisor is asked first what the VM is doing. One that QEMU stopped on a
 * write the host could not complete (`io-error`: a full filesystem under its
 * disk, `werror=enospc`) cannot answer: resumed, QEMU retries the write and stops
 * it again at once. It is not resumed then but handed back as a StalledVm, paused
 * and still owned, whose agent is attached when its owner resumes it later
 * (`unpause`, once there is room). The same holds for a VM that falls back into
 * `io-error` while it is resumed for the handshake.
 */
import { AgentConnection } from '../agent/connection.js';
import type { VmDriver, VmHandle, VmIoError } from '../vm/index.js';
import { Sandbox, stopAndRemove, type StartInfo } from './sandbox.js';
import { VmTies } from './ties.js';

export interface AdoptRecord {
  pid: number;
  runDir: string;
  /** The processes to adopt on the agent channel. */
  procIds: number[];
  /** Of those, the ones whose agent keeps their output, with the position the host has (ConnectOptions.resume). */
  resume?: Map<number, number>;
  /** The owner had paused it: it is paused again after the handshake. */
  paused?: boolean;
  info: StartInfo;
}

/** How long an adopted VM's agent has to answer once its VM runs. */
const ADOPT_TIMEOUT_MS = 5000;
/** A stalled VM's pending handshake is kept as long as a timer can wait (about 24 days). */
const HANDSHAKE_KEEP_MS = 2 ** 31 - 1;
/** How often QEMU's run state is read while a resumed VM is watched for a stall (see resumeWatched). */
const STALL_POLL_MS = 150;
/** How long a VM resumed after a stall is watched for stopping again on the same write. */
const STALL_SETTLE_MS = 500;

/** The VM stopped (again) on a write the host could not complete; it is paused, its agent unattached. */
export class VmStalledError extends Error {
  constructor(readonly ioError: VmIoError) {
    super(`the VM stopped on a write to its disk ${ioError.node} that the host could not complete (${ioError.nospace ? 'no space left on the host' : ioError.reason})`);
  }
}

/** A VM QEMU holds stopped on a failed write: owned, paused, its agent not attached yet. */
export class StalledVm extends VmTies {
  constructor(
    vm: VmHandle,
    /** The write error it stopped on (the latest, after a failed `attach`). */
    public ioError: VmIoError,
    private readonly rec: AdoptRecord,
    private readonly rootTag: string,
    private readonly cleanup: () => void,
  ) {
    super(vm);
  }

  get pid(): number {
    return this.vm.pid;
  }

  /** The agent handshake of attach(), left pending while the VM is stopped again. */
  private handshake: Promise<AgentConnection> | undefined;
  /** Aborts that handshake when the VM is released. */
  private readonly giveUp = new AbortController();

  /**
   * Resumes the VM (QEMU retries the write) and attaches its agent, adopting the
   * recorded processes: the sandbox it returns takes over the VM and its hooks.
   * A VM that stops again on the write stays paused and owned by this StalledVm,
   * and this throws VmStalledError; any other error leaves a running VM with no
   * agent, for the caller to end.
   */
  async attach(timeoutMs = ADOPT_TIMEOUT_MS): Promise<Sandbox> {
    if (this.released) throw new Error('the stalled VM was released');
    // The channel opens before the VM runs and stays open if it stops again: a handshake
    // given up (its channel closed) around a guest that had just run left QEMU 7.2's
    // virtio-serial port dead in about one run in four here (the next handshake never got
    // an answer); kept open, it never did in ten.
    const handshake = (this.handshake ??= AgentConnection.connect(this.vm.controlSocket, {
      timeoutMs: HANDSHAKE_KEEP_MS,
      adopt: this.rec.procIds,
      resume: this.rec.resume,
      signal: this.giveUp.signal,
    }));
    handshake.catch(() => {
      if (this.handshake === handshake) this.handshake = undefined;
    });
    try {
      const agent = await resumeWatched(this.vm, true, (signal) => answerWithin(handshake, timeoutMs, signal));
      this.handshake = undefined;
      const sandbox = new Sandbox(this.vm, agent, this.rec.info, this.rootTag, this.cleanup);
      this.handOver(sandbox);
      return sandbox;
    } catch (err) {
      if (err instanceof VmStalledError) this.ioError = err.ioError;
      throw err;
    }
  }

  /** forceStop() was called: the VM's exit is the one asked for. */
  stopRequested = false;

  /** Ends the VM for certain (there is no agent to ask); its 'exit' says when it is gone. */
  forceStop(): void {
    this.stopRequested = true;
    this.vm.stop();
  }

  /** Done with it: stops the VM, removes its run directory and lets go of what is tied to it. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.giveUp.abort();
    void this.handshake?.then((agent) => agent.close(), () => undefined);
    this.cleanup();
    this.runHooks();
  }
}

/**
 * Resumes VM if asked, then runs WORK while watching for the VM to stop on a write
 * error: its 'io-error' event, or QEMU's run state read every STALL_POLL_MS (the
 * event may come before anyone listens: an adopted VM's event monitor is attached
 * asynchronously, and QEMU can stop again before `cont` is even answered). A stall
 * aborts WORK (through its signal) and throws VmStalledError; the VM is paused then.
 */
async function resumeWatched<T>(vm: VmHandle, resume: boolean, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  let stall: VmIoError | undefined;
  const stalled = (e: VmIoError) => {
    stall ??= e;
    abort.abort();
  };
  vm.on('io-error', stalled);
  let watching = true;
  // One QMP client at a time: QEMU's monitor serves one connection, so polls do not overlap.
  // A VM that exits meanwhile (its container ended) is not waited for: its monitor is gone.
  let onExit!: () => void;
  const exited = new Promise<undefined>((resolve) => (onExit = () => resolve(undefined)));
  vm.once('exit', onExit);
  const poll = async () => {
    for (;;) {
      await new Promise((r) => setTimeout(r, STALL_POLL_MS).unref());
      if (!watching || abort.signal.aborted || vm.exited) return;
      const now = await Promise.race([vm.runState().catch(() => undefined), exited]);
      if (now?.state === 'io-error') stalled(now.error);
    }
  };
  try {
    if (resume) await vm.resume();
    if (stall) throw new VmStalledError(stall);
    const polling = poll();
    try {
      const result = await work(abort.signal);
      if (stall) throw new VmStalledError(stall);
      return result;
    } finally {
      watching = false;
      await polling;
    }
  } catch (err) {
    if (stall) throw new VmStalledError(stall);
    throw err;
  } finally {
    vm.off('io-error', stalled);
    vm.off('exit', onExit);
  }
}

/** HANDSHAKE's agent if it answers within TIMEOUTMS and before SIGNAL aborts; the handshake itself goes on. */
function answerWithin(handshake: Promise<AgentConnection>, timeoutMs: number, signal: AbortSignal): Promise<AgentConnection> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('guest agent did not answer in time')), timeoutMs);
    const stop = () => (clearTimeout(timer), reject(new Error('aborted')));
    if (signal.aborted) stop();
    signal.addEventListener('abort', stop, { once: true });
    handshake.then(
      (agent) => (clearTimeout(timer), signal.removeEventListener('abort', stop), resolve(agent)),
      (err: Error) => (clearTimeout(timer), signal.removeEventListener('abort', stop), reject(err)),
    );
  });
}

/** Resumes VM and waits for its agent's hello, adopting REC's processes; VmStalledError if it stops on a write error meanwhile. */
function resumeAndConnect(vm: VmHandle, rec: AdoptRecord, timeoutMs: number, resume: boolean): Promise<AgentConnection> {
  return resumeWatched(vm, resume, async (signal) => {
    const agent = await AgentConnection.connect(vm.controlSocket, { timeoutMs, adopt: rec.procIds, resume: rec.resume, signal });
    // The agent answered, but the VM stopped meanwhile: the channel is not kept (QEMU serves one client).
    if (signal.aborted) agent.close();
    return agent;
  });
}

/**
 * Resumes a VM that stopped on a write error (QEMU retries the write at once, from its
 * own host-side I/O) and watches it for STALL_SETTLE_MS: if it stops again on the write,
 * it is paused and this throws VmStalledError. With `resume` false, only watches (a VM
 * just resumed by StalledVm.attach: its agent may answer before QEMU's retry fails).
 */
export function resumeUnlessStalled(vm: VmHandle, resume = true): Promise<void> {
  return resumeWatched(vm, resume, (signal) => new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, STALL_SETTLE_MS);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  }));
}

/**
 * Re-finds the VM of REC and attaches its agent; a VM stopped on a failed write
 * comes back as a StalledVm (see above). A paused VM is resumed for the
 * handshake and paused again.
 */
export async function adoptVm(driver: VmDriver, rec: AdoptRecord): Promise<Sandbox | StalledVm> {
  const vm = driver.adopt(rec.pid, rec.runDir);
  if (!vm) throw new Error('the VM exited while the daemon was down');
  const rootTag = driver.layout.shares[0]!.tag;
  const stalledVm = (e: VmIoError) => new StalledVm(vm, e, rec, rootTag, stopAndRemove(vm, rec.runDir));
  // A QEMU whose monitor cannot say is taken to be as its record says.
  const now = await vm.runState().catch(() => undefined);
  if (now?.state === 'io-error') return stalledVm(now.error);
  try {
    const agent = await resumeAndConnect(vm, rec, ADOPT_TIMEOUT_MS, now ? now.state === 'paused' : !!rec.paused);
    if (rec.paused) await vm.pause();
    return new Sandbox(vm, agent, rec.info, rootTag, stopAndRemove(vm, rec.runDir));
  } catch (err) {
    if (err instanceof VmStalledError) return stalledVm(err.ioError);
    throw err;
  }
}

/**
 * The sandbox of a VM that a live migration brought in (paused, its guest
 * mid-run): resumed, its agent attached, the recorded processes adopted (and
 * output the agent kept beyond what the log that came along holds, resent).
 */
export async function attachMigratedVm(vm: VmHandle, rootTag: string, rec: Pick<AdoptRecord, 'procIds' | 'resume' | 'info'>): Promise<Sandbox> {
  const agent = await resumeAndConnect(vm, { ...rec, pid: vm.pid, runDir: vm.runDir }, ADOPT_TIMEOUT_MS, true);
  return new Sandbox(vm, agent, rec.info, rootTag, stopAndRemove(vm, vm.runDir));
}

/** adoptVm for a VM that has no disk a write can stop (a pod's): a stalled one is an error. */
export async function adoptSandbox(driver: VmDriver, rec: AdoptRecord): Promise<Sandbox> {
  const adopted = await adoptVm(driver, rec);
  if (adopted instanceof StalledVm) throw new VmStalledError(adopted.ioError);
  return adopted;
}
