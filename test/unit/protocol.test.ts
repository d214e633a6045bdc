/** Agent protocol (host side): framing and TLV decoding of untrusted guest bytes,
 * and an AgentConnection facing a hostile fake guest on a real socket. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentConnection } from '../../src/agent/connection.js';
import { decodeTlv, encodeFrame, encodeTlv, Fields, FrameDecoder, HEADER_SIZE, MAX_PAYLOAD, MsgType, PROTOCOL_VERSION, ProtocolError, Tag, type Frame } from '../../src/agent/protocol.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('agent protocol', () => {
  it('encodes the documented header: length, type, version, proc', () => {
    const f = encodeFrame(MsgType.Stdin, 0xdeadbeef, Buffer.from('xyz'));
    assert.equal(f.length, HEADER_SIZE + 3);
    assert.equal(f.readUInt32BE(0), 3);
    assert.equal(f.readUInt8(4), MsgType.Stdin);
    assert.equal(f.readUInt8(5), PROTOCOL_VERSION);
    assert.equal(f.readUInt32BE(8), 0xdeadbeef);
    assert.equal(f.subarray(HEADER_SIZE).toString(), 'xyz');
    assert.equal(encodeFrame(MsgType.Ping, 0).length, HEADER_SIZE, 'an empty payload is just the header');
  });

  it('decodes several frames from one chunk, and keeps a partial one for later', () => {
    const a = encodeFrame(MsgType.Stdout, 1, Buffer.from('one'));
    const b = encodeFrame(MsgType.Stderr, 2, Buffer.from('two'));
    const c = encodeFrame(MsgType.Exit, 3, encodeTlv([[Tag.Status, 7]]));
    const dec = new FrameDecoder();
    const first = dec.push(Buffer.concat([a, b, c.subarray(0, 5)]));
    assert.deepEqual(first.map((f) => [f.type, f.proc, f.payload.toString()]), [[MsgType.Stdout, 1, 'one'], [MsgType.Stderr, 2, 'two']]);
    const rest = dec.push(c.subarray(5));
    assert.equal(rest.length, 1);
    assert.equal(Fields.of(rest[0]!.payload).u32(Tag.Status), 7);
    assert.deepEqual(dec.push(Buffer.alloc(0)), []);
  });

  it('accepts a payload of exactly MAX_PAYLOAD and refuses to encode a larger one', () => {
    const big = Buffer.alloc(MAX_PAYLOAD, 7);
    const frames = new FrameDecoder().push(encodeFrame(MsgType.Stdout, 1, big));
    assert.equal(frames[0]!.payload.length, MAX_PAYLOAD);
    assert.throws(() => encodeFrame(MsgType.Stdout, 1, Buffer.alloc(MAX_PAYLOAD + 1)), ProtocolError);
    assert.throws(() => encodeTlv([[Tag.Arg, Buffer.alloc(MAX_PAYLOAD)]]), ProtocolError, 'a request that cannot fit one frame');
  });

  it('round-trips TLV fields of every type', () => {
    const payload = encodeTlv([
      [Tag.Name, 'héllo'],
      [Tag.Pid, 42],
      [Tag.Time, 1234567890123456789n],
      [Tag.Tty, true],
      [Tag.Stdin, false],
      [Tag.Seed, Buffer.from([0, 255, 1])],
      [Tag.Arg, 'a'],
      [Tag.Arg, ''],
      [Tag.Arg, 'c'],
    ]);
    const raw = decodeTlv(payload);
    assert.deepEqual(raw.map(([t]) => t), [Tag.Name, Tag.Pid, Tag.Time, Tag.Tty, Tag.Stdin, Tag.Seed, Tag.Arg, Tag.Arg, Tag.Arg]);
    assert.equal(raw[2]![1].readBigUInt64BE(0), 1234567890123456789n);
    assert.deepEqual([...raw[5]![1]], [0, 255, 1]);
    const f = Fields.of(payload);
    assert.equal(f.str(Tag.Name), 'héllo');
    assert.equal(f.u32(Tag.Pid), 42);
    assert.equal(f.u32(Tag.Tty), 1);
    assert.equal(f.u32(Tag.Stdin), 0);
    assert.deepEqual(f.strs(Tag.Arg), ['a', '', 'c']);
    assert.equal(f.u32(Tag.Errno), undefined, 'a missing field');
    assert.equal(f.u32(Tag.Name), undefined, 'a field of the wrong size is not a u32');
    assert.equal(f.str(Tag.Name, 2), 'h\ufffd', 'strings are cut at their bound');
    assert.deepEqual(f.strs(Tag.Arg, 4096, 2), ['a', ''], 'and so is their number');
    assert.equal(encodeTlv([[Tag.Pid, -1]]).readUInt32BE(5), 0xffffffff, 'numbers are u32');
    assert.deepEqual(decodeTlv(Buffer.alloc(0)), []);
  });

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
    dirs.push(dir);
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
    await assert.rejects(AgentConnection.connect(p, { timeoutMs: 500 }), /did not answer/);
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

  it('encodes MOUNT_ROOT: a 9p root as before, a block root with binds and read-only', async () => {
    const seen: Frame[] = [];
    const { path: p, server } = await fakeGuest((s) => {
      s.write(encodeFrame(MsgType.Pong, 0));
      const decoder = new FrameDecoder();
      s.on('data', (chunk) => {
        for (const f of decoder.push(chunk)) {
          if (f.type !== MsgType.MountRoot) continue;
          seen.push(f);
          s.write(encodeFrame(MsgType.Result, 0, encodeTlv([[Tag.Errno, 0]])));
        }
      });
    });
    const conn = await AgentConnection.connect(p, { timeoutMs: 2000 });
    await conn.mountRoot('hbroot0', 'root', 'sub', ['/tmp'], { isolate: true, hosts: ['10.0.0.1 db'] });
    await conn.mountRoot('', 'c1', undefined, ['/run'], { block: { lower: 'hb-lower', upper: 'hb-upper', discardOnExit: true }, readonly: true });
    await conn.mountRoot('hbvol0', 'c2', undefined, [], {
      block: { lower: 'l', upper: 'u' },
      binds: [{ source: 'v0', dest: '/data' }, { source: 'v1', dest: '/data/ro', readonly: true }],
    });
    await conn.mountRoot('', 'c3', undefined, [], { block: { lower: 'hb-lower', upper: 'hb-upper', premounted: true } });
    await conn.premountUpper('hb-upper');
    await assert.rejects(conn.mountRoot('t', 'c3', undefined, [], { binds: [{ source: 'a\tb', dest: '/x' }] }), /bad bind/);
    await assert.rejects(conn.mountRoot('t', 'c3', undefined, [], { binds: Array.from({ length: 65 }, () => ({ source: 'a', dest: '/x' })) }), /at most 64/);
    conn.close();
    server.close();
    const fields = (f: Frame) => decodeTlv(f.payload).map(([t, d]) => [t, ([Tag.Isolate, Tag.ReadOnly, Tag.DiscardOnExit, Tag.Premount, Tag.Premounted] as number[]).includes(t) ? d.readUInt32BE(0) : d.toString()]);
    assert.equal(seen.length, 5);
    assert.deepEqual(fields(seen[0]!), [[Tag.MountTag, 'hbroot0'], [Tag.Name, 'root'], [Tag.Subdir, 'sub'], [Tag.Isolate, 1], [Tag.Tmpfs, '/tmp'], [Tag.ExtraHost, '10.0.0.1 db']]);
    assert.deepEqual(fields(seen[1]!), [[Tag.Name, 'c1'], [Tag.BlockLower, 'hb-lower'], [Tag.BlockUpper, 'hb-upper'], [Tag.DiscardOnExit, 1], [Tag.ReadOnly, 1], [Tag.Tmpfs, '/run']]);
    assert.deepEqual(fields(seen[2]!), [[Tag.MountTag, 'hbvol0'], [Tag.Name, 'c2'], [Tag.BlockLower, 'l'], [Tag.BlockUpper, 'u'], [Tag.Bind, 'v0\t/data'], [Tag.Bind, 'v1\t/data/ro\tro']]);
    // A root whose disk is a copy of the one mounted ahead, and the template's step itself.
    assert.deepEqual(fields(seen[3]!), [[Tag.Name, 'c3'], [Tag.BlockLower, 'hb-lower'], [Tag.BlockUpper, 'hb-upper'], [Tag.Premounted, 1]]);
    assert.deepEqual(fields(seen[4]!), [[Tag.Name, 'premount'], [Tag.BlockUpper, 'hb-upper'], [Tag.Premount, 1]]);
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
