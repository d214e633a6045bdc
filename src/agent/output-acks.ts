/**
 * The host's side of output the agent keeps until acknowledged (guest/PROTOCOL.md,
 * "Output kept until acknowledged"). A position counts a process's output bytes,
 * stdout and stderr together, in the order the agent read them; its EXIT is one
 * position more. Pure bookkeeping: the frames go through a FrameSender.
 */
import { encodeTlv, MsgType, Tag } from './protocol.js';

export interface FrameSender {
  send(type: number, proc: number, payload?: Buffer): void;
}

/**
 * Where the host is in one process's output. Live, every payload moves it on.
 * After a re-attach (`resync`) the host has output up to the position its log
 * holds; what the agent sends before it answers RESEND is dropped (it is kept,
 * and resent), and of the resend, what the host already has is skipped.
 */
export class OutputCursor {
  /** Position after the last byte delivered. */
  position: number;
  private resyncing: boolean;
  /** Bytes of the resend the host already has. */
  private skip = 0;

  constructor(position = 0, resyncing = false) {
    this.position = position;
    this.resyncing = resyncing;
  }

  /** Whether output and EXIT are being dropped until RESENT. */
  get waiting(): boolean {
    return this.resyncing;
  }

  /** A STDOUT or STDERR payload: the part that is new, or undefined. */
  take(payload: Buffer): Buffer | undefined {
    if (this.resyncing) return undefined;
    if (this.skip >= payload.length) {
      this.skip -= payload.length;
      return undefined;
    }
    const fresh = this.skip ? payload.subarray(this.skip) : payload;
    this.skip = 0;
    this.position += fresh.length;
    return fresh;
  }

  /**
   * RESENT: the agent resends from FROM. Returns the bytes lost between what the
   * host has and FROM (0 unless something acknowledged is missing from the log).
   */
  resent(from: number): number {
    this.resyncing = false;
    if (from <= this.position) {
      this.skip = this.position - from;
      return 0;
    }
    const lost = from - this.position;
    this.position = from;
    return lost;
  }

  /** The agent keeps nothing for this process (RESENT with an error): take what comes from now on. */
  giveUp(): void {
    this.resyncing = false;
    this.skip = 0;
  }
}

/**
 * Acknowledgements of one process, cumulative and batched: however many ack()
 * calls one turn of the event loop makes, one ACK frame carries the highest.
 */
export class AckBatcher {
  private acked: number;
  private wanted: number;
  private scheduled = false;

  constructor(
    private readonly conn: FrameSender,
    private readonly proc: number,
    start = 0,
  ) {
    this.acked = this.wanted = start;
  }

  ack(position: number): void {
    if (position <= this.wanted) return;
    this.wanted = position;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** The highest position acknowledged so far (sent or about to be). */
  get position(): number {
    return this.wanted;
  }

  /** Sends the pending acknowledgement now. */
  flush(): void {
    this.scheduled = false;
    if (this.wanted <= this.acked) return;
    this.acked = this.wanted;
    this.conn.send(MsgType.Ack, this.proc, encodeTlv([[Tag.Offset, BigInt(this.acked)]]));
  }
}
