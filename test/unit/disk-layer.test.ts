/** The writable layer of a root on block devices as the guest's tar gives it (src/engine/disk-layer.ts). */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { upperChanges, upperLayer } from '../../src/engine/disk-layer.js';
import { readTar, tarOf, type Entry } from './tar-fixtures.js';

const whiteout = (name: string): Entry => ({ name, type: 'character-device', devmajor: 0, devminor: 0 });

// An upper directory as busybox's tar writes it: "./" names, a whiteout, a
// second whiteout that is a hard link to the first (overlay shares one inode),
// an opaque directory, and paths the agent manages.
const UPPER: Entry[] = [
  { name: './', type: 'directory' },
  { name: './bin/', type: 'directory' },
  whiteout('./bin/vi'),
  { name: './bin/ls', type: 'link', linkname: './bin/vi' },
  { name: './home/', type: 'directory' },
  { name: './home/new', body: 'fresh\n' },
  { name: './tmp/', type: 'directory' },
  { name: './tmp/made', body: 'inside\n' },
  { name: './tmp/null', type: 'character-device', devmajor: 1, devminor: 3 },
  { name: './tmp/hard', type: 'link', linkname: './tmp/made' },
  { name: './proc/', type: 'directory' },
  { name: './proc/x', body: 'x' },
  { name: './etc/', type: 'directory' },
  { name: './etc/hostname', body: 'h\n' },
];

describe('block-root layers read through the guest', () => {
  let lower: string;
  before(() => {
    lower = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-lower-'));
    for (const d of ['bin', 'home/old', 'tmp', 'etc']) fs.mkdirSync(path.join(lower, d), { recursive: true });
    for (const f of ['bin/vi', 'bin/ls', 'etc/passwd']) fs.writeFileSync(path.join(lower, f), '');
  });
  after(() => fs.rmSync(lower, { recursive: true, force: true }));

  it('makes an OCI layer: whiteouts (hard-linked ones too) as .wh. files, opaque markers, no agent paths', async () => {
    const got = await readTar(upperLayer(await tarOf(UPPER), new Set(['home'])));
    const names = got.map((e) => e.header.name.replace(/\/$/, ''));
    assert.deepEqual(names, ['bin', 'bin/.wh.vi', 'bin/.wh.ls', 'home', 'home/.wh..wh..opq', 'home/new', 'tmp', 'tmp/made', 'tmp/null', 'tmp/hard', 'etc']);
    const byName = new Map(got.map((e) => [e.header.name.replace(/\/$/, ''), e]));
    assert.equal(byName.get('bin/.wh.ls')!.header.type, 'file');
    assert.equal(byName.get('home/new')!.body, 'fresh\n');
    assert.equal(byName.get('tmp/hard')!.header.linkname, 'tmp/made');
    assert.equal(byName.get('tmp/null')!.header.devminor, 3, 'a real device node stays one');
  });

  it('lists changes as on a host upper directory: A, C, D in walk order, agent paths not in the image left out', async () => {
    const changes = await upperChanges(await tarOf(UPPER), lower);
    assert.deepEqual(
      changes.map((c) => `${'CAD'[c.Kind]} ${c.Path}`),
      ['C /bin', 'D /bin/ls', 'D /bin/vi', 'C /etc', 'C /home', 'A /home/new', 'C /tmp', 'A /tmp/hard', 'A /tmp/made', 'A /tmp/null'],
    );
  });

  it("refuses a guest's tar with names that leave the layer or entries no layer holds", async () => {
    for (const bad of [
      [{ name: '../x' }],
      [{ name: './a/../../x' }],
      [{ name: '/etc/passwd' }],
      [{ name: './h', type: 'link' as const, linkname: '../../etc/shadow' }],
      [{ name: './a//b' }],
    ]) {
      await assert.rejects(readTar(upperLayer(await tarOf(bad), new Set())), /bad entry name/, JSON.stringify(bad));
      await assert.rejects(upperChanges(await tarOf(bad), lower), /bad entry name/, JSON.stringify(bad));
    }
  });
});
