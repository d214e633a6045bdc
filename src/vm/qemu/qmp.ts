/**
 * Minimal QMP client (QEMU Machine Protocol): JSON commands over a unix socket.
 * Used for stop/cont/migrate (templates and clones) and for querying state.
 */
import net from 'node:net';
import { connectWhenReady } from '../../common/unix-socket.js';
import { setTimeout as sleep } from 'node:timers/promises';

export class QmpClient {
  private buf = '';
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private greeted: Promise<void>;
  private events: Array<(ev: { event: string; data?: unknown }) => void> = [];

  private constructor(private readonly sock: net.Socket) {
    let greet!: () => void;
    let refuse!: (err: Error) => void;
    // A monitor that closes before its greeting (its QEMU died) fails the connect, not hangs it.
    this.greeted = new Promise((resolve, reject) => ((greet = resolve), (refuse = reject)));
    this.greeted.catch(() => undefined);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      if (this.buf.length > 1 << 20) return sock.destroy(new Error('QMP: oversized message'));
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if ('QMP' in msg) greet();
        else if ('event' in msg) for (const e of this.events) e(msg as { event: string });
        else if ('return' in msg) this.waiters.shift()?.resolve(msg.return);
        else if ('error' in msg) {
          const e = msg.error as { desc?: string };
          this.waiters.shift()?.reject(new Error(`QMP: ${e.desc ?? 'error'}`));
        }
      }
    });
    const fail = (err?: Error) => {
      refuse(err ?? new Error('QMP connection closed'));
      for (const w of this.waiters.splice(0)) w.reject(err ?? new Error('QMP connection closed'));
    };
    sock.on('error', fail);
    sock.on('close', () => fail());
  }

  static async connect(path: string, timeoutMs = 10000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await connectWhenReady(path, Date.now(), { what: 'QMP socket' });
        const qmp = new QmpClient(sock);
        await qmp.greeted;
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`QMP socket ${path}: ${(err as Error).message}`);
        await sleep(5);
      }
    }
  }

  /** Runs a command. A QEMU that does not answer in time (its main loop can block,
   * e.g. on a bad incoming migration) fails the command instead of hanging us. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // The waiter keeps its place in the queue after a timeout, so that later
      // answers still pair with their commands.
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new Error(`QMP: ${command} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push({
        resolve: (v) => {
          clearTimeout(timer);
          if (!settled) resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          if (!settled) reject(e);
        },
      });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  onEvent(fn: (ev: { event: string; data?: unknown }) => void): void {
    this.events.push(fn);
  }

  close(): void {
    this.sock.destroy();
  }
}
