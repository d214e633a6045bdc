/**
 * Request and start timeouts on the agent channel, against a fake guest on a
 * real socket: a slow answer fails only its own request (the channel and the
 * VM behind it live on), and a process that starts after its caller gave up
 * is killed rather than left unowned.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentConnection, AgentTimeoutError } from '../../src/agent/connection.js';
import { encodeFrame, encodeTlv, Fields, FrameDecoder, MsgType, Tag, type Frame } from '../../src/agent/protocol.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fake guest: answers PING, records every frame, and lets the test answer the rest. */
async function fakeGuest(): Promise<{ socketPath: string; frames: Frame[]; next: (type: number) => Promise<Frame>; send: (b: Buffer) => void; close: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbagent-'));
  dirs.push(dir);
  const socketPath = path.join(dir, 'ctl.sock');
  const frames: Frame[] = [];
  const waiters: Array<{ type: number; resolve: (f: Frame) => void }> = [];
  let peer: net.Socket | undefined;
  const server = net.createServer((s) => {
    peer = s;
    const decoder = new FrameDecoder();
    s.on('data', (chunk) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === MsgType.Ping) {
          s.write(encodeFrame(MsgType.Pong, 0));
          continue;
        }
        frames.push(f);
        const i = waiters.findIndex((w) => w.type === f.type);
        if (i >= 0) waiters.splice(i, 1)[0]!.resolve(f);
      }
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return {
    socketPath,
    frames,
    next: (type) => {
      const seen = frames.find((f) => f.type === type);
      if (seen) {
        frames.splice(frames.indexOf(seen), 1);
        return Promise.resolve(seen);
      }
      return new Promise((resolve) => waiters.push({ type, resolve }));
    },
    send: (b) => peer!.write(b),
    close: () => {
      peer?.destroy();
      server.close();
    },
  };
}

describe('agent channel timeouts', () => {
  it('a slow STATS fails alone: the channel stays open and later answers go to the right request', async () => {
    const guest = await fakeGuest();
    const conn = await AgentConnection.connect(guest.socketPath, { timeoutMs: 5000 });
    try {
      await assert.rejects(conn.stats(100), AgentTimeoutError);
      assert.equal(conn.closed, false, 'a timed-out request must not close the channel (that stops the VM)');
      // The late STATS answer arrives, then a CONFIGURE whose answer is an error only it can carry.
      await guest.next(MsgType.Stats);
      guest.send(encodeFrame(MsgType.Result, 0, encodeTlv([[Tag.Uptime, 5]])));
      const configured = conn.configure({ hostname: 'h', seed: Buffer.alloc(8) });
      await guest.next(MsgType.Configure);
      guest.send(encodeFrame(MsgType.Result, 0, encodeTlv([[Tag.Errno, 5], [Tag.Message, 'answer-to-configure']])));
      await assert.rejects(configured, /answer-to-configure/);
      assert.equal(conn.closed, false);
    } finally {
      conn.close();
      guest.close();
    }
  });

  it('a START the guest does not answer times out; a late STARTED gets its process killed', async () => {
    const guest = await fakeGuest();
    const conn = await AgentConnection.connect(guest.socketPath, { timeoutMs: 5000 });
    try {
      const spec = { root: 'root', args: ['sleep', '1'], env: [], cwd: '/', user: '', tty: false, stdin: false };
      await assert.rejects(conn.start(spec, 100), AgentTimeoutError);
      const start = await guest.next(MsgType.Start);
      guest.send(encodeFrame(MsgType.Started, start.proc, encodeTlv([[Tag.Pid, 42]])));
      const kill = await guest.next(MsgType.Signal);
      assert.equal(kill.proc, start.proc);
      assert.equal(Fields.of(kill.payload).u32(Tag.Signal), 9);
      assert.equal(conn.closed, false);
    } finally {
      conn.close();
      guest.close();
    }
  });

  it('a guest that leaves many requests unanswered is cut off', async () => {
    const guest = await fakeGuest();
    const conn = await AgentConnection.connect(guest.socketPath, { timeoutMs: 5000 });
    try {
      const closed = new Promise((r) => conn.once('close', r));
      await Promise.all(Array.from({ length: 20 }, () => conn.stats(50).catch(() => undefined)));
      await closed;
      assert.equal(conn.closed, true);
    } finally {
      conn.close();
      guest.close();
    }
  });
});
