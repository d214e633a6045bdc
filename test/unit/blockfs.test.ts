/**
 * Block storage on the host, with the real tools: an image's erofs keeps what
 * a root filesystem needs (FIFOs, device nodes, setuid bits, hard links,
 * owners, xattrs), is built once per source and once for concurrent callers;
 * a container's writable disk is a sparse ext4 of the asked size, and removing
 * it frees the space. The erofs is mounted (read-only, loop) only here, to
 * read its xattrs back: the host built it itself. Nothing a guest wrote is
 * ever mounted.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BlockStorage,
  DEFAULT_DISK_BYTES,
  allocatedBytes,
  blockUsage,
  containerDiskPath,
  diskSize,
  ensureBlankExt4,
  ensureContainerDisk,
  ensureErofs,
  imageFsKey,
} from '../../src/images/blockfs.js';
import type { Image } from '../../src/images/store.js';

const isRoot = process.getuid?.() === 0;
const has = (tool: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const erofsTools = has('mkfs.erofs') && has('dump.erofs');
const ext4Tools = has('mkfs.ext4') && has('dumpe2fs');
const hostErofs = fs.readFileSync('/proc/filesystems', 'utf8').includes('erofs');

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hbblockfs-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A PATH entry whose TOOL logs each run to a file, then runs the real one. */
function countRuns(tool: string): { count(): number; restore(): void } {
  const bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
  const log = path.join(bin, 'runs');
  const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
  fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\necho run >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  return {
    count: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0),
    restore: () => {
      process.env.PATH = saved;
    },
  };
}

/** dump.erofs's view of one path: NID, link count, type, owner, mode. */
function erofsInode(image: string, p: string): { nid: number; links: number; type: string; uid: number; gid: number; mode: string } {
  const out = execFileSync('dump.erofs', [`--path=${p}`, image], { encoding: 'utf8' });
  const m = (re: RegExp) => re.exec(out)?.[1] ?? '';
  return {
    nid: Number(m(/NID: (\d+)/)),
    links: Number(m(/Links: (\d+)/)),
    type: m(/On-disk size: \d+\s+(.+)\n/).trim(),
    uid: Number(m(/Uid: (\d+)/)),
    gid: Number(m(/Gid: (\d+)/)),
    mode: m(/Access: (\d+)/),
  };
}

const CAP_NET_RAW = Buffer.from('AQAAAgAgAAAAAAAAAAAAAAAAAAA=', 'base64');

describe('image filesystems (erofs)', { skip: !erofsTools ? 'needs erofs-utils (mkfs.erofs, dump.erofs)' : !isRoot ? 'needs root (device nodes, owners, file capabilities)' : false }, () => {
  let tree: string;
  before(() => {
    tree = path.join(tmp, 'tree');
    fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    fs.linkSync(path.join(tree, 'etc', 'passwd'), path.join(tree, 'etc', 'passwd.hard'));
    execFileSync('mkfifo', [path.join(tree, 'fifo')]);
    execFileSync('mknod', [path.join(tree, 'null'), 'c', '1', '3']);
    fs.writeFileSync(path.join(tree, 'su'), '#!/bin/sh\n');
    fs.chmodSync(path.join(tree, 'su'), 0o4755);
    fs.writeFileSync(path.join(tree, 'ping'), 'x');
    execFileSync('setfattr', ['-n', 'security.capability', '-v', `0s${CAP_NET_RAW.toString('base64')}`, path.join(tree, 'ping')]);
    execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', path.join(tree, 'etc', 'passwd')]);
    fs.mkdirSync(path.join(tree, 'home', 'u'), { recursive: true });
    fs.chownSync(path.join(tree, 'home', 'u'), 1000, 1001);
    fs.symlinkSync('../etc/passwd', path.join(tree, 'home', 'link'));
    fs.utimesSync(path.join(tree, 'su'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  });

  it('keeps FIFOs, device nodes, setuid bits, hard links, owners, mtimes and xattrs; the file is root 0600', async () => {
    const dir = path.join(tmp, 'img-a');
    const img = await ensureErofs(dir, { rootfs: tree, key: 'k1' });
    assert.equal(path.basename(img), 'image-k1.erofs');
    const st = fs.statSync(img);
    assert.equal(st.mode & 0o7777, 0o600);
    assert.equal(st.uid, 0);
    execFileSync('fsck.erofs', [img], { stdio: 'ignore' });
    const fifo = erofsInode(img, '/fifo');
    assert.match(fifo.type, /fifo/i);
    assert.match(erofsInode(img, '/null').type, /char/);
    assert.equal(erofsInode(img, '/su').mode, '0755'); // dump.erofs 1.5 shows no setuid bit: the mount below checks it
    const a = erofsInode(img, '/etc/passwd');
    const b = erofsInode(img, '/etc/passwd.hard');
    assert.equal(a.nid, b.nid);
    assert.equal(a.links, 2);
    assert.deepEqual([erofsInode(img, '/home/u').uid, erofsInode(img, '/home/u').gid], [1000, 1001]);
    if (!hostErofs) return;
    // Read it back through the kernel (read-only; an image this host built itself).
    const mnt = path.join(tmp, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'erofs', '-o', 'loop,ro,nosuid,nodev,noexec', img, mnt]);
    try {
      assert.ok(fs.statSync(path.join(mnt, 'fifo')).isFIFO());
      const dev = fs.statSync(path.join(mnt, 'null'));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.rdev, fs.statSync(path.join(tree, 'null')).rdev);
      assert.equal(fs.statSync(path.join(mnt, 'su')).mode & 0o7777, 0o4755);
      assert.equal(fs.statSync(path.join(mnt, 'su')).mtime.toISOString(), '2001-02-03T04:05:06.000Z');
      assert.equal(fs.statSync(path.join(mnt, 'etc/passwd')).ino, fs.statSync(path.join(mnt, 'etc/passwd.hard')).ino);
      assert.equal(fs.readlinkSync(path.join(mnt, 'home/link')), '../etc/passwd');
      const xattr = (f: string, name: string) => execFileSync('getfattr', ['--only-values', '-n', name, path.join(mnt, f)]);
      assert.equal(xattr('etc/passwd', 'user.note').toString(), 'hello');
      assert.deepEqual(xattr('ping', 'security.capability'), CAP_NET_RAW);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('is built once per source: kept while the key holds, rebuilt (and the old one dropped) when it changes', async () => {
    const dir = path.join(tmp, 'img-b');
    const runs = countRuns('mkfs.erofs');
    try {
      const first = await ensureErofs(dir, { rootfs: tree, key: 'k1' });
      const ino = fs.statSync(first).ino;
      assert.equal(await ensureErofs(dir, { rootfs: tree, key: 'k1' }), first);
      assert.equal(fs.statSync(first).ino, ino);
      assert.equal(runs.count(), 1);
      const second = await ensureErofs(dir, { rootfs: tree, key: 'k2' });
      assert.equal(runs.count(), 2);
      assert.deepEqual(fs.readdirSync(dir), [path.basename(second)]);
    } finally {
      runs.restore();
    }
  });

  it('builds once for concurrent callers, and leaves no temporary file', async () => {
    const dir = path.join(tmp, 'img-c');
    const runs = countRuns('mkfs.erofs');
    try {
      const all = await Promise.all(Array.from({ length: 6 }, () => ensureErofs(dir, { rootfs: tree, key: 'same' })));
      assert.equal(new Set(all).size, 1);
      assert.equal(runs.count(), 1);
      assert.deepEqual(fs.readdirSync(dir), ['image-same.erofs']);
    } finally {
      runs.restore();
    }
  });

  it('fails cleanly (no file published) when the source cannot be read', async () => {
    const dir = path.join(tmp, 'img-d');
    await assert.rejects(ensureErofs(dir, { rootfs: path.join(tmp, 'no-such-tree'), key: 'k' }), /cannot build the image filesystem/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('BlockStorage: unpacks the image first, keys on the image ID and layer chain, counts in blockUsage', async () => {
    const dataRoot = path.join(tmp, 'data');
    const imagesDir = path.join(dataRoot, 'rootfs');
    let unpacks = 0;
    const rootfs = {
      imageRootfsPath: (id: string) => path.join(imagesDir, id.slice(7), 'rootfs'),
      imageRootfs: async (image: Image) => {
        unpacks++;
        const d = path.join(imagesDir, image.id.slice(7), 'rootfs');
        fs.mkdirSync(path.dirname(d), { recursive: true });
        if (!fs.existsSync(d)) execFileSync('cp', ['-a', tree, d]);
        return d;
      },
    };
    const blocks = new BlockStorage(rootfs, { imagesDir, containersDir: path.join(dataRoot, 'containers'), dataRoot });
    const image = { id: `sha256:${'ab'.repeat(32)}`, config: { rootfs: { type: 'layers', diff_ids: [`sha256:${'01'.repeat(32)}`] } } } as unknown as Image;
    const [p1, p2] = await Promise.all([blocks.ensureImageFs(image), blocks.ensureImageFs(image)]);
    assert.equal(p1, p2);
    assert.equal(path.dirname(p1), path.join(imagesDir, 'ab'.repeat(32)));
    assert.equal(await blocks.ensureImageFs(image), p1);
    assert.ok(unpacks <= 2);
    const other = { ...image, config: { rootfs: { type: 'layers', diff_ids: [`sha256:${'02'.repeat(32)}`] } } } as unknown as Image;
    assert.notEqual(imageFsKey(other), imageFsKey(image));
    const usage = blocks.blockUsage();
    assert.deepEqual(Object.keys(usage.images), [image.id]);
    assert.equal(usage.imagesTotal, allocatedBytes(p1));
    assert.ok(usage.imagesTotal > 0);
  });
});

describe('writable disks (sparse ext4)', { skip: ext4Tools ? false : 'needs e2fsprogs (mkfs.ext4, dumpe2fs)' }, () => {
  const dumpe2fs = (f: string, all = false) => execFileSync('dumpe2fs', all ? [f] : ['-h', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

  it('is a sparse ext4 of the asked size, root 0600, with every inode table zeroed (no lazy init in the guest)', async () => {
    const blanks = path.join(tmp, 'blanks');
    const dir = path.join(tmp, 'containers', 'c1');
    fs.mkdirSync(dir, { recursive: true });
    const disk = await ensureContainerDisk(dir, DEFAULT_DISK_BYTES, blanks);
    assert.equal(disk, containerDiskPath(dir));
    const st = fs.statSync(disk);
    assert.equal(st.size, 10 * 1024 ** 3);
    assert.ok(allocatedBytes(disk) < 2 * 1024 ** 2, `allocated ${allocatedBytes(disk)} bytes of a 10 GiB disk`);
    assert.equal(st.mode & 0o7777, 0o600);
    if (isRoot) assert.equal(st.uid, 0);
    const head = dumpe2fs(disk);
    assert.match(head, /Filesystem magic number:\s+0xEF53/);
    assert.match(head, /Filesystem features:.*has_journal.*extent/);
    assert.doesNotMatch(head, /orphan_file|metadata_csum_seed|resize_inode/);
    assert.match(head, /Block count:\s+2621440\b/);
    assert.match(head, /Reserved block count:\s+0\b/);
    assert.match(head, /Filesystem state:\s+clean/);
    const groups = dumpe2fs(disk, true).split('\n').filter((l) => /^Group \d+:/.test(l));
    assert.ok(groups.length > 1 && groups.every((l) => l.includes('ITABLE_ZEROED')));
    execFileSync('e2fsck', ['-fn', disk], { stdio: 'ignore' });
  });

  it('formats a blank once per size and copies it; keeps an existing disk; concurrent starts make one', async () => {
    const blanks = path.join(tmp, 'blanks2');
    const runs = countRuns('mkfs.ext4');
    try {
      const size = 64 * 1024 ** 2;
      const dirs = ['a', 'b'].map((n) => path.join(tmp, 'containers2', n));
      for (const d of dirs) fs.mkdirSync(d, { recursive: true });
      const same = await Promise.all([ensureContainerDisk(dirs[0]!, size, blanks), ensureContainerDisk(dirs[0]!, size, blanks), ensureContainerDisk(dirs[1]!, size, blanks)]);
      assert.equal(same[0], same[1]);
      assert.equal(runs.count(), 1);
      const blankNames = fs.readdirSync(blanks).filter((n) => /^blank-ext4-.*\.img$/.test(n));
      assert.equal(blankNames.length, 1);
      assert.deepEqual(fs.readdirSync(dirs[0]!), ['disk.ext4']);
      // A copy is made ahead, and the next disk of that size is that very file.
      const spare = path.join(blanks, `${blankNames[0]}.spare`);
      for (let i = 0; i < 200 && !fs.existsSync(spare); i++) await new Promise((r) => setTimeout(r, 25));
      const spareIno = fs.statSync(spare).ino;
      const third = path.join(tmp, 'containers2', 'c');
      fs.mkdirSync(third);
      assert.equal(fs.statSync(await ensureContainerDisk(third, size, blanks)).ino, spareIno);
      // An existing disk is the container's: never replaced.
      const ino = fs.statSync(same[0]!).ino;
      assert.equal(await ensureContainerDisk(dirs[0]!, 2 * size, blanks), same[0]);
      assert.equal(fs.statSync(same[0]!).ino, ino);
      assert.equal(fs.statSync(same[2]!).size, size);
      await ensureBlankExt4(blanks, 128 * 1024 ** 2);
      assert.equal(runs.count(), 2);
    } finally {
      runs.restore();
    }
  });

  it('counts allocated blocks in blockUsage, and removal frees the disk', async () => {
    const dataRoot = path.join(tmp, 'data3');
    const containersDir = path.join(dataRoot, 'containers');
    const blocks = new BlockStorage({ imageRootfs: async () => '', imageRootfsPath: (id) => path.join(dataRoot, 'rootfs', id.slice(7), 'rootfs') }, { imagesDir: path.join(dataRoot, 'rootfs'), containersDir, dataRoot });
    const dir = path.join(containersDir, 'c'.repeat(64));
    fs.mkdirSync(dir, { recursive: true });
    const disk = await blocks.ensureContainerDisk(dir, 32 * 1024 ** 2);
    // Data written into the disk (as a guest would) is what it counts, not the apparent size.
    const fd = fs.openSync(disk, 'r+');
    fs.writeSync(fd, Buffer.alloc(4 * 1024 ** 2, 1), 0, 4 * 1024 ** 2, 16 * 1024 ** 2);
    fs.closeSync(fd);
    const usage = blocks.blockUsage();
    assert.equal(usage.containers['c'.repeat(64)], allocatedBytes(disk));
    assert.ok(usage.containersTotal >= 4 * 1024 ** 2 && usage.containersTotal < 32 * 1024 ** 2);
    assert.ok(usage.blanks > 0);
    fs.writeFileSync(path.join(dir, '.disk.ext4.tmp-deadbeef'), 'left by a crash');
    blocks.removeContainerDisk(dir);
    assert.deepEqual(fs.readdirSync(dir), []);
    assert.deepEqual(blocks.blockUsage().containers, {});
    blocks.removeContainerDisk(dir);
  });

  it('checks sizes: whole 4 KiB blocks, at least 16 MB, at most 16 TB', () => {
    assert.equal(diskSize(16 * 1024 ** 2 + 1), 16 * 1024 ** 2 + 4096);
    assert.throws(() => diskSize(1024 ** 2), /at least 16MB/);
    assert.throws(() => diskSize(17 * 1024 ** 4), /at most 16TB/);
  });
});

describe('blockUsage', () => {
  it('is empty for a data root without block storage', () => {
    const d = path.join(tmp, 'empty');
    assert.deepEqual(blockUsage({ imagesDir: path.join(d, 'rootfs'), containersDir: path.join(d, 'containers'), blankDir: path.join(d, 'blockfs') }), {
      images: {},
      containers: {},
      blanks: 0,
      imagesTotal: 0,
      containersTotal: 0,
    });
  });
});
