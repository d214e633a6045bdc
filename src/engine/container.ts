/**
 * One container: its persisted record plus, while it runs, its sandbox (VM +
 * agent), its main process, its log and the clients attached to it.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { GuestProcess } from '../agent/connection.js';
import type { LogWriter } from './logs.js';
import type { StalledVm } from '../sandbox/adopt.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { OperationLock } from './state.js';
import type { ContainerRecord } from './types.js';

/** A client attached to a container's stdio (the hijacked connection of `attach`). */
export interface Attachment {
  stdout?: (data: Buffer) => void;
  stderr?: (data: Buffer) => void;
  /** Client's input, forwarded to the main process once it runs. */
  stdin?: Readable;
  /** Called once when the container's output has ended. */
  end: () => void;
}

export class Container extends EventEmitter<{ exit: [number] }> {
  sandbox: Sandbox | undefined;
  main: GuestProcess | undefined;
  /**
   * Instead of a sandbox and a main process: a VM a restarted daemon found stopped
   * on a write the full host filesystem refused, owned and paused until `unpause`
   * attaches its agent (disk-stall.ts).
   */
  stalled: StalledVm | undefined;
  log: LogWriter | undefined;
  readonly attachments = new Set<Attachment>();
  /** Serialises start, stop, restart, pause and remove (see state.ts). */
  readonly lock = new OperationLock();
  removed = false;
  /** A pending restart by the restart policy. */
  restartTimer: NodeJS.Timeout | undefined;
  private removedWaiters: Array<() => void> = [];

  constructor(
    public record: ContainerRecord,
    readonly dir: string,
    /** Writes the record durably (one metadata transaction). */
    private readonly persist: (record: ContainerRecord) => void,
  ) {
    super();
    this.setMaxListeners(0);
  }

  get id(): string {
    return this.record.Id;
  }
  get name(): string {
    return this.record.Name;
  }
  /** The name without Docker's leading slash, as users type it. */
  get shortName(): string {
    return this.record.Name.replace(/^\//, '');
  }
  /** What the DNS of its bridge network answers for: name, short ID, host name, aliases. */
  get dnsNames(): string[] {
    return [this.shortName, this.id.slice(0, 12), this.record.Config.Hostname, ...(this.record.NetworkAliases ?? [])];
  }
  get running(): boolean {
    return this.record.State.Running;
  }
  /** The daemon follows its VM: a main process on a sandbox, or a stalled VM. */
  get attached(): boolean {
    return !!(this.main || this.stalled);
  }
  /** Ends its VM for certain (a stalled one by its pid); the VM's exit then ends the container. */
  forceStop(): void {
    if (this.sandbox) this.sandbox.forceStop();
    else this.stalled?.forceStop();
  }
  /** A start is in progress (its VM is booting). */
  get starting(): boolean {
    return this.lock.current === 'start';
  }

  get logFile(): string {
    return path.join(this.dir, 'container.log');
  }

  save(): void {
    if (this.removed) return;
    this.persist(this.record);
  }

  waitRemoved(): Promise<void> {
    if (this.removed) return Promise.resolve();
    return new Promise((r) => this.removedWaiters.push(r));
  }

  markRemoved(): void {
    this.removed = true;
    for (const w of this.removedWaiters.splice(0)) w();
  }

  /** Resolves when the container next stops running (or now, if it is not running). */
  waitNotRunning(): Promise<number> {
    if (!this.running && !this.starting) return Promise.resolve(this.record.State.ExitCode);
    return this.waitNextExit();
  }

  waitNextExit(): Promise<number> {
    return new Promise((r) => this.once('exit', r));
  }
}
