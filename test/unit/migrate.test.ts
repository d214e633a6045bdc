/**
 * Live migration's pure parts: the guest-shape check, the image-filesystem
 * digest that ignores what two mkfs.erofs runs make differ, the incoming VM's
 * command line (a clone's RAM layout, held paused) and the stream relay.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { listenOnce, splice } from '../../src/common/relay.js';
import { checkProfile, erofsDigest, offerSchema } from '../../src/engine/migrate-offer.js';
import { qemuArgs } from '../../src/vm/qemu/args.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-unit-mig-'));
process.once('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** erofsDigest of a copy of IMG, edited, written as NAME. */
function digestOf(img: Buffer, name: string, edit: (b: Buffer) => void): Promise<string> {
  const b = Buffer.from(img);
  edit(b);
  fs.writeFileSync(path.join(tmp, name), b);
  return erofsDigest(path.join(tmp, name));
}

describe('live migration', () => {
  const ours = { assets: 'a'.repeat(64), qemu: '7.2.22', accel: 'tcg', layout: 3 };

  it('takes a guest of the same shape and names every difference otherwise', () => {
    checkProfile({ ...ours }, ours);
    assert.throws(() => checkProfile({ ...ours, qemu: '8.0.0', assets: 'b'.repeat(64) }, ours), /guest kernel\/agent: source bbbb.*QEMU version: source 8\.0\.0, here 7\.2\.22/);
    assert.throws(() => checkProfile({ ...ours, accel: 'kvm' }, ours), /accelerator: source kvm, here tcg/);
    assert.throws(() => checkProfile({ ...ours, layout: 2 }, ours), /device layout revision/);
  });

  it('digests an erofs image without its build time, UUID and superblock checksum', async () => {
    const img = Buffer.alloc(3 << 20, 7);
    const write = (name: string, edit: (b: Buffer) => void) => digestOf(img, name, edit);
    const base = await write('a', () => undefined);
    // Checksum (1028), build time (1048, ns at 1056) and UUID (1072..1087) differ between two builds of one tree.
    assert.equal(await write('b', (b) => b.fill(9, 1028, 1032).fill(9, 1048, 1060).fill(9, 1072, 1088)), base);
    for (const at of [1024, 1040, 1060, 1088, 4096, (2 << 20) + 5]) assert.notEqual(await write(`c${at}`, (b) => (b[at] = 1)), base, `byte ${at}`);
  });

  it("leaves out the root directory's mtime (an extended inode's, at meta_blkaddr and root_nid)", async () => {
    const img = Buffer.alloc(1 << 20, 7);
    img[1036] = 12; // 4 KiB blocks
    img.writeUInt32LE(0, 1064); // meta_blkaddr
    img.writeUInt16LE(36, 1038); // root_nid: the inode at 1152
    img.writeUInt16LE(1, 1152); // extended
    const digest = (name: string, edit: (b: Buffer) => void) => digestOf(img, name, edit);
    const base = await digest('r', () => undefined);
    assert.equal(await digest('r1', (b) => b.fill(1, 1184, 1196)), base);
    assert.notEqual(await digest('r2', (b) => (b[1196] = 1)), base, 'i_nlink counts');
    const compact = await digest('r0', (b) => b.writeUInt16LE(0, 1152));
    assert.notEqual(await digest('r3', (b) => (b.writeUInt16LE(0, 1152), b.fill(1, 1184, 1196))), compact, 'a compact inode has no mtime there');
  });

  it('refuses an offer that is not a block root, or names a bad ID', () => {
    const offer = {
      Record: { Id: 'a'.repeat(64), Name: '/web', ImageId: `sha256:${'b'.repeat(64)}`, MainProcId: 1, Storage: 'block', Config: {} },
      Guest: ours,
      MemoryMiB: 256,
      Cpus: 1,
      RamBackend: true,
      UpperBytes: 10 * 2 ** 30,
      LowerDigest: 'c'.repeat(64),
      Source: 'x',
    };
    assert.ok(offerSchema.safeParse(offer).success);
    assert.equal(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, Storage: '9p' } }).success, false);
    assert.equal(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, Id: '../x' } }).success, false);
    assert.equal(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, Name: '/a/../b' } }).success, false);
    assert.equal(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, PodId: 'p' } }).success, false);
    assert.equal(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, MountPoints: [{ Type: 'bind', Source: '/' }] } }).success, false);
    assert.ok(offerSchema.safeParse({ ...offer, Record: { ...offer.Record, MountPoints: [{ Type: 'tmpfs', Destination: '/run' }] } }).success);
    // A bridge container's network: its name and address, nothing else.
    const onBridge = { ...offer, Network: { Name: 'bridge', Default: true, IPAddress: '10.88.0.2' } };
    assert.ok(offerSchema.safeParse(onBridge).success);
    assert.equal(offerSchema.safeParse({ ...onBridge, Network: { ...onBridge.Network, IPAddress: '10.88.0.2/20' } }).success, false);
    assert.equal(offerSchema.safeParse({ ...onBridge, Network: { ...onBridge.Network, Tap: 'eth0' } }).success, false);
  });

  it("gives an incoming VM on a bridge the netdevs a bridge VM has (its TAP, the idle slirp): the device state loads", () => {
    const assets = { kernel: '/k/vmlinux', initrd: '/k/initrd.img', fingerprint: 'fp' };
    const shape = { assets, accel: 'tcg' as const, memoryMiB: 256, cpus: 1 };
    const netdevs = (a: string[]) => a.flatMap((x, i) => (x === '-netdev' ? [a[i + 1]!] : []));
    const net = { forwards: [], tap: 'ht1234abcdef' };
    const incoming = netdevs(qemuArgs({ runDir: '/run/hb/in', shape, sharePaths: [], net, incoming: true, startPaused: true, ramBackend: true }));
    assert.deepEqual(incoming, netdevs(qemuArgs({ runDir: '/run/hb/c', shape, sharePaths: [], net })));
    assert.deepEqual(incoming, ['tap,id=net0,ifname=ht1234abcdef,script=no,downscript=no', 'user,id=slirp0,restrict=on,ipv6=off']);
  });

  it('starts the incoming VM paused, with RAM as the `mem` backend a clone has', () => {
    const assets = { kernel: '/k/vmlinux', initrd: '/k/initrd.img', fingerprint: 'fp' };
    const args = qemuArgs({ runDir: '/run/hb/in', shape: { assets, accel: 'tcg', memoryMiB: 256, cpus: 1 }, sharePaths: [], incoming: true, startPaused: true, ramBackend: true });
    assert.ok(args.includes('-S'));
    assert.ok(args.join(' ').includes('-incoming defer'));
    assert.ok(args.includes('memory-backend-ram,id=mem,size=256M'));
    assert.match(args[args.indexOf('-M') + 1]!, /memory-backend=mem/);
    const cold = qemuArgs({ runDir: '/run/hb/in', shape: { assets, accel: 'tcg', memoryMiB: 256, cpus: 1 }, sharePaths: [] });
    assert.ok(!cold.includes('-S') && !cold.join(' ').includes('memory-backend'));
  });

  it('relays both ways through a socket that takes one connection', async () => {
    const sock = path.join(tmp, 'r.sock');
    const one = await listenOnce(sock);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    const echo = net.createServer((s) => s.pipe(s)).listen(path.join(tmp, 'echo.sock'));
    await new Promise((r) => echo.once('listening', r));
    const client = net.connect(sock);
    const relayed = one.accepted.then((local) => splice(local, net.connect(path.join(tmp, 'echo.sock'))));
    client.write('ping');
    const got = await new Promise<string>((r) => client.once('data', (d) => r(d.toString())));
    assert.equal(got, 'ping');
    client.destroy();
    await relayed; // one side closing closes the other
    one.close();
    echo.close();
    assert.equal(fs.existsSync(sock), false);
  });
});
