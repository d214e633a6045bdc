/** Terminal and hijacked-stream plumbing shared by run, start -a and exec. */
import type { Socket } from 'node:net';
import { Demuxer } from './client.js';
import { api } from './context.js';

interface StreamOpts {
  tty: boolean;
  stdin: boolean;
}

/** Copies a hijacked stream to our stdout/stderr (and stdin to it). Resolves when output ends. */
export function pumpHijacked(sock: Socket, o: StreamOpts): Promise<void> {
  return new Promise((resolve) => {
    if (o.tty) sock.on('data', (d: Buffer) => process.stdout.write(d));
    else {
      const demux = new Demuxer((stream, data) => (stream === 2 ? process.stderr : process.stdout).write(data));
      sock.on('data', (d: Buffer) => demux.push(d));
    }
    sock.on('end', () => resolve());
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    if (o.stdin) {
      process.stdin.on('data', (d: Buffer) => sock.write(d));
      process.stdin.on('end', () => sock.end());
    } else {
      sock.end(); // half-close: we send nothing, as the docker CLI does
    }
  });
}

export function rawTerminal(on: boolean): void {
  if (process.stdin.isTTY) process.stdin.setRawMode(on);
}

export function terminalSize(): { h: number; w: number } | undefined {
  return process.stdout.isTTY ? { h: process.stdout.rows, w: process.stdout.columns } : undefined;
}

export function monitorResize(resizePath: string): () => void {
  const send = () => {
    const s = terminalSize();
    if (s) void api('POST', resizePath, { query: s }).catch(() => undefined);
  };
  send();
  process.on('SIGWINCH', send);
  return () => process.off('SIGWINCH', send);
}

