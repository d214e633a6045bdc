/**
 * A process's stdio over the FIFOs containerd passes. Every FIFO is opened
 * O_RDWR|O_NONBLOCK: that never blocks (a blocking open would wait in Node's
 * thread pool for the other end and can hang the shim's exit), and holding
 * the write side of stdin ourselves means stdin ends only when containerd says
 * so (CloseIO), not when a client briefly has no writer open.
 */
import fs from 'node:fs';
import net from 'node:net';

export interface ProcessIo {
  stdin?: net.Socket;
  stdout?: net.Socket;
  stderr?: net.Socket;
}

function openFifo(p: string, readable: boolean): net.Socket | undefined {
  if (!p) return undefined;
  const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const sock = new net.Socket({ fd, readable, writable: !readable });
  sock.on('error', () => sock.destroy());
  return sock;
}

export function openIo(paths: { stdin: string; stdout: string; stderr: string }, terminal: boolean): ProcessIo {
  const io: ProcessIo = {};
  try {
    io.stdin = openFifo(paths.stdin, true);
    io.stdout = openFifo(paths.stdout, false);
    // With a terminal, the pty's one stream goes to stdout.
    io.stderr = terminal ? undefined : openFifo(paths.stderr, false);
    return io;
  } catch (err) {
    closeIo(io);
    throw err;
  }
}

/** Ends the output FIFOs (containerd's readers then see EOF once written) and drops stdin. */
export function finishIo(io: ProcessIo): Promise<void> {
  io.stdin?.destroy();
  const ends = [io.stdout, io.stderr].filter((s): s is net.Socket => !!s && !s.destroyed);
  return Promise.all(ends.map((s) => new Promise<void>((resolve) => {
    const timer = setTimeout(() => (s.destroy(), resolve()), 2000); // a reader that went away
    s.end(() => (clearTimeout(timer), s.destroy(), resolve()));
  }))).then(() => undefined);
}

export function closeIo(io: ProcessIo): void {
  for (const s of [io.stdin, io.stdout, io.stderr]) s?.destroy();
}
