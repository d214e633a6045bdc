/** Agent protocol (host side): framing and TLV decoding of untrusted guest bytes,
 * and an AgentConnection facing a hostile fake guest on a real socket. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentConnection } from '../src/agent/connection.js';
import { decodeTlv, encodeFrame, encodeTlv, FrameDecoder, HEADER_SIZE, MAX_PAYLOAD, MsgType, ProtocolError, Tag } from '../src/agent/protocol.js';

describe('agent protocol', () => {
  it('round-trips frames split at every byte boundary', () => {
    const frame = encodeFrame(MsgType.Stdout, 7, Buffer.from('hello'));
    for (let cut = 0; cut <= frame.length; cut++) {
      const dec = new FrameDecoder();
      const frames = [...dec.push(frame.subarray(0, cut)), ...dec.push(frame.subarray(cut))];
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.proc, 7);
      assert.equal(frames[0]!.payload.toString(), 'hello');
    }
  });

  it('rejects oversized frames before buffering them', () => {
    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 0);
    header.writeUInt8(1, 5);
    assert.throws(() => new FrameDecoder().push(header), ProtocolError);
  });

  it('rejects a wrong protocol version', () => {
    const f = encodeFrame(MsgType.Hello, 0);
    f.writeUInt8(9, 5);
    assert.throws(() => new FrameDecoder().push(f), /version 9/);
  });

  it('rejects TLV fields that overrun their frame', () => {
    const tlv = encodeTlv([[Tag.Message, 'abc']]);
    tlv.writeUInt32BE(1000, 1);
    assert.throws(() => decodeTlv(tlv), ProtocolError);
    assert.throws(() => decodeTlv(Buffer.from([1, 0])), ProtocolError);
  });

  async function fakeGuest(behaviour: (sock: net.Socket) => void): Promise<{ path: string; server: net.Server }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbp-'));
    const p = path.join(dir, 'ctl.sock');
    const server = net.createServer(behaviour);
    await new Promise<void>((r) => server.listen(p, r));
    return { path: p, server };
  }

  it('closes the channel on a guest that sends garbage, without throwing', async () => {
    const { path: p, server } = await fakeGuest((s) => s.write(Buffer.alloc(64, 0xff)));
    await assert.rejects(AgentConnection.connect(p, { timeoutMs: 2000 }), /oversized|version/);
    server.close();
  });

  it('times out on a guest that never answers', async () => {
    const { path: p, server } = await fakeGuest(() => undefined);
    const t0 = Date.now();
    await assert.rejects(AgentConnection.connect(p, { timeoutMs: 500 }), /did not answer/);
    assert.ok(Date.now() - t0 < 3000);
    server.close();
  });

  it('fails a pending request when the guest disconnects', async () => {
    const { path: p, server } = await fakeGuest((s) => {
      s.write(encodeFrame(MsgType.Pong, 0));
      s.once('data', () => s.destroy());
    });
    const conn = await AgentConnection.connect(p, { timeoutMs: 2000 });
    await assert.rejects(conn.mountRoot('tag', 'root'), /closed/);
    server.close();
  });

  it('treats an unsolicited result as a protocol violation', async () => {
    const { path: p, server } = await fakeGuest((s) => {
      s.write(encodeFrame(MsgType.Pong, 0));
      setTimeout(() => s.write(encodeFrame(MsgType.Result, 0, encodeTlv([[Tag.Errno, 0]]))), 50);
    });
    const conn = await AgentConnection.connect(p, { timeoutMs: 2000 });
    const err = await new Promise<Error | undefined>((r) => conn.once('close', r));
    assert.match(String(err), /nobody asked/);
    server.close();
  });
});
