/** The metadata database (SQLite): migration of earlier versions' JSON records, and a newer schema refused. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MetadataStore, SCHEMA_VERSION } from '../../src/engine/metadata.js';

describe('metadata database', () => {
  it('migrates the JSON records of earlier versions and refuses a newer schema', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-meta-'));
    try {
      const dir = path.join(root, 'containers', 'a'.repeat(64));
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config.v2.json'), JSON.stringify({ Id: 'a'.repeat(64), Name: '/old', State: { Status: 'exited' } }));
      const db = new MetadataStore(path.join(root, 'hyperbox.db'), path.join(root, 'containers'));
      assert.equal(db.schemaVersion(), SCHEMA_VERSION);
      assert.deepEqual(db.all().map((r) => r.Name), ['/old']);
      assert.equal(fs.existsSync(path.join(dir, 'config.v2.json')), false);
      db.close();
      execFileSync('sqlite3', [path.join(root, 'hyperbox.db'), 'PRAGMA user_version = 99'], { stdio: 'ignore' });
      assert.throws(() => new MetadataStore(path.join(root, 'hyperbox.db'), path.join(root, 'containers')), /newer than this hyperbox/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
