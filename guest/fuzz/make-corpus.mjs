// Writes the fuzzer's seed corpus (guest/fuzz/corpus/): valid frames of every
// request type, as src/agent/connection.ts sends them, and a stream of several.
// Run with: node guest/fuzz/make-corpus.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'corpus');
const T = { Hostname: 8, Time: 9, Seed: 10, Tag: 11, Name: 12, Arg: 13, Env: 14, Cwd: 15, User: 16, Tty: 17,
  Rows: 18, Cols: 19, Stdin: 20, Subdir: 21, Ipv4: 26, Gateway: 27, Dns: 28, Tmpfs: 29, MemLimit: 30, Signal: 6,
  Mac: 32, Isolate: 33, CapAdd: 35, CapDrop: 36, Privileged: 37, Init: 38, Exec: 39,
  ExtraHost: 34, BlockLower: 40, BlockUpper: 41, Bind: 42, ReadOnly: 43, Acked: 61, Offset: 62 };
const M = { Configure: 0x20, MountRoot: 0x21, Readdress: 0x26, Ping: 0x22, Poweroff: 0x23, Stats: 0x24, Start: 0x10, Stdin: 0x11,
  StdinEof: 0x12, Signal: 0x13, Resize: 0x14, Ack: 0x15, Resend: 0x16, Stdout: 0x32, Stderr: 0x33 };

function tlv(fields) {
  return Buffer.concat(fields.flatMap(([tag, v]) => {
    let d;
    if (typeof v === 'string') d = Buffer.from(v);
    else if (typeof v === 'number') { d = Buffer.alloc(4); d.writeUInt32BE(v); }
    else if (typeof v === 'bigint') { d = Buffer.alloc(8); d.writeBigUInt64BE(v); }
    else d = v;
    const h = Buffer.alloc(5);
    h.writeUInt8(tag, 0);
    h.writeUInt32BE(d.length, 1);
    return [h, d];
  }));
}
function frame(type, proc, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(12);
  h.writeUInt32BE(payload.length, 0);
  h.writeUInt8(type, 4);
  h.writeUInt8(1, 5);
  h.writeUInt32BE(proc, 8);
  return Buffer.concat([h, payload]);
}

const seed = Buffer.alloc(32, 0x5a);
const frames = {
  configure: frame(M.Configure, 0, tlv([[T.Hostname, 'c0ffee'], [T.Time, 1700000000000000000n], [T.Seed, seed],
    [T.MemLimit, 268435456n], [T.Ipv4, '10.88.0.2/16'], [T.Gateway, '10.88.0.1'], [T.Dns, '10.88.0.1'],
    [T.Mac, Buffer.from([0x02, 0x42, 0x0a, 0x58, 0x00, 0x02])]])),
  readdress: frame(M.Readdress, 0, tlv([[T.Name, 'root'], [T.Ipv4, '10.88.16.2/20'], [T.Gateway, '10.88.16.1'],
    [T.Dns, '10.88.16.1'], [T.Mac, Buffer.from([0x02, 0x42, 0x0a, 0x58, 0x10, 0x02])], [T.ExtraHost, '10.88.16.1 gw']])),
  'configure-min': frame(M.Configure, 0, tlv([[T.Hostname, 'h'], [T.Time, 1n], [T.Seed, Buffer.alloc(0)]])),
  'mount-root': frame(M.MountRoot, 0, tlv([[T.Tag, 'root'], [T.Name, 'c1']])),
  'mount-root-pod': frame(M.MountRoot, 0, tlv([[T.Tag, 'pod'], [T.Name, 'web'], [T.Subdir, 'web'], [T.Isolate, 1],
    [T.Tmpfs, '/run:size=64m,mode=1777,exec'], [T.Tmpfs, '/tmp'], [T.Tmpfs, '/data:ro,uid=1000,gid=1000,nr_inodes=100,nosuid,dev']])),
  'mount-root-block': frame(M.MountRoot, 0, tlv([[T.Name, 'c1'], [T.BlockLower, 'hb-lower'], [T.BlockUpper, 'hb-upper'],
    [T.Tmpfs, '/tmp'], [T.ExtraHost, '10.0.0.1 db']])),
  'mount-root-block-binds': frame(M.MountRoot, 0, tlv([[T.Tag, 'hbvol0'], [T.Name, 'app'], [T.BlockLower, 'hb-lower'],
    [T.BlockUpper, 'hb-upper'], [T.Bind, 'v1\t/data/sub\tro'], [T.Bind, 'v0\t/data'], [T.Bind, 'f0\t/etc/app.conf\trw'],
    [T.Tmpfs, '/data/sub/tmp'], [T.ReadOnly, 1], [T.Isolate, 1]])),
  start: frame(M.Start, 7, tlv([[T.Name, 'c1'], [T.Arg, 'sh'], [T.Arg, '-c'], [T.Arg, 'echo hi'],
    [T.Env, 'PATH=/usr/bin:/bin'], [T.Env, 'HOME=/root'], [T.Cwd, '/srv/app'], [T.User, 'nobody:nogroup'],
    [T.Stdin, 1]])),
  'start-tty': frame(M.Start, 8, tlv([[T.Name, 'c1'], [T.Arg, 'top'], [T.Tty, 1], [T.Stdin, 1], [T.Rows, 50], [T.Cols, 132],
    [T.User, '1000:1000']])),
  'start-caps': frame(M.Start, 9, tlv([[T.Name, 'c1'], [T.Arg, 'ip'], [T.CapAdd, 'net_admin'], [T.CapAdd, 'CAP_SYS_TIME'],
    [T.CapDrop, 'chown'], [T.CapDrop, 'ALL'], [T.Privileged, 0], [T.Init, 1]])),
  'start-exec': frame(M.Start, 10, tlv([[T.Name, 'c1'], [T.Arg, 'ps'], [T.Exec, 1], [T.CapAdd, 'all']])),
  stdin: frame(M.Stdin, 7, Buffer.from('hello\n')),
  'stdin-eof': frame(M.StdinEof, 7),
  signal: frame(M.Signal, 7, tlv([[T.Signal, 15], [T.Signal, 9]])),
  resize: frame(M.Resize, 8, tlv([[T.Rows, 40], [T.Cols, 100]])),
  'start-acked': frame(M.Start, 11, tlv([[T.Name, 'c1'], [T.Arg, 'sh'], [T.Acked, 1]])),
  ack: frame(M.Ack, 11, tlv([[T.Offset, 6n]])),
  resend: frame(M.Resend, 11, tlv([[T.Offset, 3n]])),
  ping: frame(M.Ping, 0),
  stats: frame(M.Stats, 0),
};
frames.stream = Buffer.concat([frames.configure, frames['mount-root'], frames.start, frames.stdin, frames['stdin-eof'],
  frames.signal, frames.ping]);
// Output kept and acknowledged (the fuzzer feeds STDOUT/STDERR payloads to keep.c).
frames['kept-output'] = Buffer.concat([frames['start-acked'], frame(M.Stdout, 11, Buffer.from('one\ntwo\n')),
  frame(M.Stderr, 11, Buffer.from('err\n')), frames.ack, frame(M.Stdout, 11, Buffer.from('three\n')), frames.resend,
  frame(M.Ack, 11, tlv([[T.Offset, 2n]]))]);
fs.mkdirSync(dir, { recursive: true });
for (const [name, bytes] of Object.entries(frames)) fs.writeFileSync(path.join(dir, name), bytes);
console.log(`${Object.keys(frames).length} seeds in ${dir}`);
