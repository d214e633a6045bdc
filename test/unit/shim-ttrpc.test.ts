/**
 * The containerd shim's ttrpc framing and dispatch (src/shim/ttrpc.ts) over a
 * real unix socket, and its reading of OCI specs (src/shim/oci.ts).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { groupOf, netnsPathOf, processSpec, rootMounts } from '../../src/shim/oci.js';
import { containerMetrics } from '../../src/shim/stats.js';
import { decode, encode } from '../../src/shim/proto.js';
import { Code, encodeFrame, FrameDecoder, FrameType, HEADER_LENGTH, MAX_MESSAGE, RpcError, TtrpcServer } from '../../src/shim/ttrpc.js';

interface Response {
  status: { code: number; message: string } | null;
  payload: Buffer;
}

describe('shim ttrpc framing', () => {
  it('reassembles frames split at any byte and several frames in one chunk', () => {
    const a = encodeFrame({ streamId: 1, type: FrameType.Request, payload: Buffer.from('hello') });
    const b = encodeFrame({ streamId: 3, type: FrameType.Response, payload: Buffer.alloc(0), flags: 7 });
    const all = Buffer.concat([a, b]);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder();
      const frames = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      assert.deepEqual(frames.map((f) => [f.streamId, f.type, f.flags, f.payload.toString()]), [[1, 1, 0, 'hello'], [3, 2, 7, '']], `cut at ${cut}`);
    }
    assert.equal(a.readUInt32BE(0), 5);
    assert.equal(a.length, HEADER_LENGTH + 5);
  });

  it('refuses a frame over the 4 MiB limit from its header alone', () => {
    const head = Buffer.alloc(HEADER_LENGTH);
    head.writeUInt32BE(MAX_MESSAGE + 1, 0);
    assert.throws(() => new FrameDecoder().push(head), (e: RpcError) => e.code === Code.InvalidArgument && /exceeds/.test(e.message));
    head.writeUInt32BE(MAX_MESSAGE, 0);
    assert.deepEqual(new FrameDecoder().push(head), []); // at the limit: waits for the payload
  });
});

describe('shim ttrpc server', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbttrpc-'));
  const sockPath = path.join(dir, 's.sock');
  const server = new TtrpcServer();
  after(() => (server.close(), fs.rmSync(dir, { recursive: true, force: true })));

  /** Sends requests on one connection and collects the responses by stream id. */
  async function call(reqs: Array<{ service: string; method: string; payload?: Buffer }>, raw?: Buffer): Promise<Map<number, Response>> {
    const sock = net.connect(sockPath);
    const decoder = new FrameDecoder();
    const out = new Map<number, Response>();
    return new Promise((resolve, reject) => {
      sock.on('error', reject);
      sock.on('close', () => resolve(out));
      sock.on('data', (chunk) => {
        for (const f of decoder.push(chunk)) {
          assert.equal(f.type, FrameType.Response);
          out.set(f.streamId, decode<Response>('ttrpc.Response', f.payload));
        }
        if (out.size === reqs.length) sock.end();
      });
      const bytes = Buffer.concat(reqs.map((r, i) => encodeFrame({ streamId: 2 * i + 1, type: FrameType.Request, payload: encode('ttrpc.Request', r) })));
      // Byte by byte: the server must cope with partial frames.
      for (let i = 0; i < bytes.length; i++) sock.write(bytes.subarray(i, i + 1));
      if (raw) sock.write(raw);
    });
  }

  it('answers each request on its stream, a slow one not holding up the others', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.register('test.Svc', {
      Echo: async (p) => Buffer.concat([Buffer.from('echo:'), p]),
      Slow: async () => (await gate, Buffer.from('slow')),
      Fail: async () => Promise.reject(new RpcError(Code.NotFound, 'no such thing')),
    });
    await server.listen(sockPath);
    const pending = call([{ service: 'test.Svc', method: 'Slow' }, { service: 'test.Svc', method: 'Echo', payload: Buffer.from('x') }]);
    setTimeout(release, 100);
    const res = await pending;
    assert.equal(res.get(1)!.payload.toString(), 'slow');
    assert.equal(res.get(3)!.payload.toString(), 'echo:x');
    assert.equal(res.get(3)!.status, null);
  });

  it('answers an unknown method with Unimplemented and a handler error with its code', async () => {
    const res = await call([{ service: 'test.Svc', method: 'Nope' }, { service: 'other.Svc', method: 'Echo' }, { service: 'test.Svc', method: 'Fail' }]);
    assert.equal(res.get(1)!.status!.code, Code.Unimplemented);
    assert.match(res.get(1)!.status!.message, /test\.Svc\/Nope is not implemented/);
    assert.equal(res.get(3)!.status!.code, Code.Unimplemented);
    assert.deepEqual([res.get(5)!.status!.code, res.get(5)!.status!.message], [Code.NotFound, 'no such thing']);
  });

  it('drops a connection that sends an oversized frame, and keeps serving others', async () => {
    const head = Buffer.alloc(HEADER_LENGTH);
    head.writeUInt32BE(MAX_MESSAGE + 1, 0);
    head.writeUInt8(FrameType.Request, 8);
    const res = await call([], head); // resolves when the server closes the connection
    assert.equal(res.size, 0);
    const again = await call([{ service: 'test.Svc', method: 'Echo', payload: Buffer.from('y') }]);
    assert.equal(again.get(1)!.payload.toString(), 'echo:y');
  });
});

describe('shim OCI spec', () => {
  it('turns the OCI process into the agent process spec', () => {
    const p = processSpec({ args: ['sh'], env: ['A=1'], cwd: '/w', user: { uid: 5, gid: 6 }, terminal: true, capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL'] } }, 'r', false);
    assert.deepEqual([p.args, p.env, p.cwd, p.user, p.tty, p.capDrop, p.capAdd], [['sh'], ['A=1'], '/w', '5:6', true, ['ALL'], ['CHOWN', 'KILL']]);
    assert.throws(() => processSpec({ args: [] }, 'r', false), /no args/);
    assert.throws(() => processSpec({ args: ['x'], env: 'A=1' as unknown as string[] }, 'r', false), /process\.env/);
  });

  it('keeps tmpfs and binds, leaves the agent its own mounts, refuses what it cannot do', () => {
    const m = rootMounts({
      root: { readonly: true },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/dev/shm', type: 'tmpfs', options: ['size=65536k'] },
        { destination: '/run', type: 'tmpfs', options: ['nosuid', 'size=1m', 'strictatime'] },
        { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] },
      ],
    });
    assert.deepEqual(m, { readonly: true, tmpfs: ['/run:nosuid,size=1m'], binds: [{ hostPath: '/srv/data', dest: '/data', readonly: true }] });
    assert.throws(() => rootMounts({ mounts: [{ destination: '/x', type: 'nfs', source: 'h:/e' }] }), (e: RpcError) => e.code === Code.Unimplemented);
    assert.throws(() => rootMounts({ mounts: [{ destination: 'rel', type: 'tmpfs' }] }), /absolute destination/);
  });

  it('groups a CRI container with its pod sandbox, anything else on its own', () => {
    assert.equal(groupOf({ annotations: { 'io.kubernetes.cri.sandbox-id': 'pod1' } }, 'c1'), 'pod1');
    assert.equal(groupOf({}, 'c1'), 'c1');
  });

  it('finds the network namespace path CRI passes (CNI), and none without one', () => {
    assert.equal(netnsPathOf({ linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }] } }), '/var/run/netns/cni-1');
    assert.equal(netnsPathOf({ linux: { namespaces: [{ type: 'network' }] } }), undefined, 'ctr: a new namespace, no path');
    assert.equal(netnsPathOf({}), undefined, 'the node network: no network namespace at all');
  });

  it('passes additionalGids as the process groups and rejects what is not a gid', () => {
    assert.deepEqual(processSpec({ args: ['id'], user: { uid: 1, gid: 2, additionalGids: [2, 1234] } }, 'r', false).groupAdd, ['2', '1234']);
    assert.throws(() => processSpec({ args: ['id'], user: { additionalGids: [-1] } }, 'r', false), /additionalGids must be numbers/);
  });
});

describe('shim Stats', () => {
  it("sums the container's process trees from the guest's process table", () => {
    const proc = (pid: number, ppid: number, utime: number, stime: number, rssPages: number) => ({ pid, ppid, uid: 0, state: 'S', utime, stime, rssPages, startTicks: 0, command: 'x' });
    const stats = { memTotal: 0, memAvailable: 0, cpuBusyTicks: 0, cpuTotalTicks: 0, uptimeSeconds: 0,
      processes: [proc(1, 0, 100, 100, 100), proc(10, 1, 5, 1, 10), proc(11, 10, 2, 0, 20), proc(20, 1, 7, 7, 30), proc(30, 1, 1, 1, 1)] };
    // The init (10) with its child (11) and an exec (30); another container (20) and the agent (1) are not counted.
    assert.deepEqual(containerMetrics(stats, [10, 30, 99]), { pids: { current: 3 }, cpu: { usage_usec: 100_000, user_usec: 80_000, system_usec: 20_000 }, memory: { usage: 31 * 4096, anon: 31 * 4096 } });
    assert.equal(containerMetrics(stats, []).pids.current, 0);
  });
});
