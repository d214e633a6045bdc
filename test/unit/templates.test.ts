/** Template store keys come from clients: only a key, never a path. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/common/logger.js';
import { TemplateStore } from '../../src/vm/qemu/template.js';
import type { GuestAssets } from '../../src/vm/assets.js';

describe('template store', () => {
  it('refuses to remove anything but a template key (no path traversal)', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hbtpl-'));
    try {
      const canary = path.join(root, 'canary');
      fs.writeFileSync(canary, 'x');
      const store = new TemplateStore(path.join(root, 'templates'), '7.2', createLogger('fatal'));
      for (const key of ['..', '../canary', '.', '', '/', 'abc', '0123456789ABCDEF']) assert.equal(store.remove(key), false, key);
      assert.ok(fs.existsSync(canary));
      assert.ok(fs.existsSync(path.join(root, 'templates')));
      fs.mkdirSync(path.join(root, 'templates', '0123456789abcdef'));
      assert.equal(store.remove('0123456789abcdef'), true);
      assert.equal((fs.statSync(path.join(root, 'templates')).mode & 0o777).toString(8), '700');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('keys a shape with an upper mounted ahead apart from the same shape on placeholders, by the blank it copies', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hbtpl-'));
    try {
      const store = new TemplateStore(path.join(root, 'templates'), '7.2', createLogger('fatal'));
      const assets = { kernel: '/k', initrd: '/i', fingerprint: 'f' } as GuestAssets;
      const shape = { assets, accel: 'tcg' as const, memoryMiB: 256, cpus: 1, root: 'disks' as const };
      const keys = [
        store.keyOf(shape),
        store.keyOf({ ...shape, premountUpper: '/data/blockfs/blank-ext4-10737418240-aaaa.img' }),
        store.keyOf({ ...shape, premountUpper: '/data/blockfs/blank-ext4-67108864-aaaa.img' }),
      ];
      assert.equal(new Set(keys).size, 3);
      // Another data root's blank of the same size and format: the same template.
      assert.equal(store.keyOf({ ...shape, premountUpper: '/other/blockfs/blank-ext4-10737418240-aaaa.img' }), keys[1]);
      // A 9p root has no upper disk: the field changes nothing.
      const share = { ...shape, root: 'share' as const };
      assert.equal(store.keyOf({ ...share, premountUpper: '/x/blank.img' }), store.keyOf(share));
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
