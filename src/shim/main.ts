/**
 * containerd-shim-hyperbox-v2: the containerd shim v2 binary protocol.
 *
 *   start   (cwd: the bundle) finds or starts the shim of the container's pod
 *           (grouped by the CRI sandbox-id annotation, else the container is its
 *           own pod) and prints only its socket address; containerd reads
 *           stdout and stderr together, so nothing else may be printed.
 *   delete  called after a shim went away: stops what it left (VM, binds) and
 *           prints a DeleteResponse; idempotent.
 *   serve   (internal) the long-lived shim: a ttrpc server for the Task service.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createLogger, type Logger } from '../common/logger.js';
import { EventPublisher } from './events.js';
import { groupOf, readSpec } from './oci.js';
import { cleanupDeadPod, PodVm } from './pod-vm.js';
import { encode, timestamp } from './proto.js';
import { TaskService } from './task-service.js';
import { TtrpcServer } from './ttrpc.js';

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  action: string;
}

/** Where a bundle records the pod directory of the shim serving it. */
const POD_FILE = 'hyperbox-pod';
const SERVICES = ['containerd.task.v2.Task', 'containerd.task.v3.Task'];

export function parseFlags(argv: string[]): ShimFlags {
  const f: ShimFlags = { namespace: '', address: '', publishBinary: 'containerd', id: '', bundle: process.cwd(), debug: false, action: '' };
  const valued: Record<string, keyof ShimFlags> = { namespace: 'namespace', address: 'address', 'publish-binary': 'publishBinary', id: 'id', bundle: 'bundle' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--?/, '');
    if (a.startsWith('-') && name in valued) {
      const v = argv[++i];
      if (v === undefined) throw new Error(`flag ${a} needs a value`);
      (f as unknown as Record<string, string>)[valued[name]!] = v;
    } else if (name === 'debug' && a.startsWith('-')) f.debug = true;
    else if (a.startsWith('-')) throw new Error(`unknown flag ${a}`);
    else f.action = a;
  }
  return f;
}

export function stateDir(): string {
  return process.env.HYPERBOX_SHIM_STATE || '/var/lib/hyperbox-shim';
}

/** The pod directory of GROUP: one per containerd (address), namespace and pod. */
export function podDirFor(flags: ShimFlags, group: string): string {
  const key = createHash('sha256').update(`${flags.address}\0${flags.namespace}\0${group}`).digest('hex').slice(0, 20);
  return path.join(stateDir(), 'pods', key);
}

function alive(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs FN holding the pod's start lock: two containers of a pod starting at once get one shim. */
async function withStartLock<T>(podDir: string, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(podDir, { recursive: true, mode: 0o700 });
  const lock = path.join(podDir, 'start.lock');
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(fs.readFileSync(lock, 'utf8') || 0);
      if (holder && !pidAlive(holder)) fs.rmSync(lock, { force: true }); // its holder died
      else if (Date.now() > deadline) throw new Error(`${lock} is held by process ${holder}`);
      else await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

async function start(flags: ShimFlags): Promise<string> {
  if (!flags.id) throw new Error('start needs -id');
  const podDir = podDirFor(flags, groupOf(readSpec(flags.bundle), flags.id));
  const address = await withStartLock(podDir, () => startShim(flags, podDir));
  fs.writeFileSync(path.join(flags.bundle, POD_FILE), podDir);
  // What a restarted containerd reads to reconnect to the shim (as runc's shim writes it).
  fs.writeFileSync(path.join(flags.bundle, 'address'), address);
  return address;
}

/** The address of the pod's shim, started here unless it already serves. */
async function startShim(flags: ShimFlags, podDir: string): Promise<string> {
  const socket = path.join(podDir, 'shim.sock');
  if (!(await alive(socket))) {
    const log = fs.openSync(path.join(podDir, 'shim.log'), 'a');
    const script = process.argv[1]!;
    const args = ['-namespace', flags.namespace, '-address', flags.address, '-publish-binary', flags.publishBinary, '-id', flags.id, '-bundle', podDir, ...(flags.debug ? ['-debug'] : []), 'serve'];
    const child = spawn(process.execPath, [script, ...args], { detached: true, stdio: ['ignore', log, log], cwd: podDir });
    fs.closeSync(log);
    let exited = false;
    child.on('exit', () => (exited = true));
    const deadline = Date.now() + 15_000;
    while (!(await alive(socket))) {
      if (exited || Date.now() > deadline) {
        const tail = fs.readFileSync(path.join(podDir, 'shim.log'), 'utf8').slice(-800);
        if (!exited) child.kill('SIGKILL');
        throw new Error(`the hyperbox shim did not come up: ${tail.trim() || 'no output'}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.unref();
  }
  return `unix://${socket}`;
}

/** After a shim went away: its VM and binds go (unless the pod's shim still serves); prints a DeleteResponse. */
async function del(flags: ShimFlags, logger: Logger): Promise<Buffer> {
  const podFile = path.join(flags.bundle, POD_FILE);
  const podDir = fs.existsSync(podFile) ? fs.readFileSync(podFile, 'utf8').trim() : '';
  if (podDir && path.dirname(podDir) === path.join(stateDir(), 'pods') && fs.existsSync(podDir) && !(await alive(path.join(podDir, 'shim.sock')))) {
    await cleanupDeadPod(stateDir(), podDir, logger);
  }
  fs.rmSync(podFile, { force: true });
  return encode('containerd.task.v2.DeleteResponse', { pid: 0, exit_status: 128 + 9, exited_at: timestamp(new Date()) });
}

async function serve(flags: ShimFlags, logger: Logger): Promise<void> {
  const podDir = flags.bundle;
  const pod = new PodVm({ stateDir: stateDir(), podDir, logger, accel: process.env.HYPERBOX_ACCEL });
  const events = new EventPublisher({ binary: flags.publishBinary, address: flags.address, namespace: flags.namespace, logger });
  const server = new TtrpcServer();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    await events.drain();
    await pod.release();
    process.exit(0);
  };
  const tasks = new TaskService(pod, events, logger, () => void stop());
  for (const s of SERVICES) server.register(s, tasks.handlers());
  process.on('SIGTERM', () => void stop()).on('SIGINT', () => void stop());
  await server.listen(path.join(podDir, 'shim.sock'));
  logger.info(`serving ${flags.namespace}/${flags.id} on ${path.join(podDir, 'shim.sock')}`);
}

export async function main(argv: string[]): Promise<number> {
  let flags: ShimFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    process.stderr.write(`containerd-shim-hyperbox-v2: ${(err as Error).message}\n`);
    return 2;
  }
  const logger = createLogger(flags.debug ? 'debug' : 'info');
  try {
    switch (flags.action) {
      case 'start':
        process.stdout.write(await start(flags));
        return 0;
      case 'delete':
        process.stdout.write(await del(flags, createLogger('warn')));
        return 0;
      case 'serve':
        await serve(flags, logger);
        return -1; // keeps running
      default:
        throw new Error(`unknown action "${flags.action}" (start, delete)`);
    }
  } catch (err) {
    process.stderr.write(`containerd-shim-hyperbox-v2: ${(err as Error).message}\n`);
    return 1;
  }
}
