/** Template store keys come from clients: only a key, never a path. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/common/logger.js';
import { TemplateStore } from '../../src/vm/qemu/template.js';

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
});
