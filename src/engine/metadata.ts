/**
 * Container metadata in SQLite (better-sqlite3): one row per container, each
 * state change one transaction, WAL journal so a killed daemon never leaves a
 * torn record. The schema is versioned (PRAGMA user_version) and migrated
 * forward on open; version 1 imports the per-container JSON files that earlier
 * hyperbox versions wrote.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ContainerRecord } from './types.js';

type Migration = (db: Database.Database, ctx: { containersDir: string }) => void;

const MIGRATIONS: Migration[] = [
  // 1: containers table; adopt the JSON records of hyperbox <= 0.1.
  (db, { containersDir }) => {
    db.exec(`CREATE TABLE containers (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      record TEXT NOT NULL,
      updated_at TEXT NOT NULL
    )`);
    const insert = db.prepare('INSERT OR IGNORE INTO containers (id, name, record, updated_at) VALUES (?, ?, ?, ?)');
    for (const id of fs.existsSync(containersDir) ? fs.readdirSync(containersDir) : []) {
      const file = path.join(containersDir, id, 'config.v2.json');
      try {
        const record = JSON.parse(fs.readFileSync(file, 'utf8')) as ContainerRecord;
        if (record.Id === id) insert.run(record.Id, record.Name, JSON.stringify(record), new Date().toISOString());
        fs.rmSync(file, { force: true });
      } catch {
        /* not a container record: reconcile() reports the directory */
      }
    }
  },
  // 2: pods.
  (db) => {
    db.exec('CREATE TABLE pods (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL, updated_at TEXT NOT NULL)');
  },
  // 3: user-defined (bridge) networks.
  (db) => {
    db.exec('CREATE TABLE networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL, updated_at TEXT NOT NULL)');
  },
];

/** Tables holding one JSON record per named object, besides containers. */
export type RecordTable = 'pods' | 'networks';

export const SCHEMA_VERSION = MIGRATIONS.length;

export class MetadataStore {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  private readonly del: Database.Statement;

  constructor(file: string, containersDir: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // Container records hold their environment (secrets): owner only, WAL files included.
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    fs.chmodSync(file, 0o600);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    for (const f of [`${file}-wal`, `${file}-shm`]) if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new Error(`${file} has schema version ${current}, newer than this hyperbox (${SCHEMA_VERSION}): refusing to touch it`);
    }
    for (let v = current; v < SCHEMA_VERSION; v++) {
      this.db.transaction(() => {
        MIGRATIONS[v]!(this.db, { containersDir });
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
    this.upsert = this.db.prepare(
      'INSERT INTO containers (id, name, record, updated_at) VALUES (@id, @name, @record, @at) ON CONFLICT(id) DO UPDATE SET name = @name, record = @record, updated_at = @at',
    );
    this.del = this.db.prepare('DELETE FROM containers WHERE id = ?');
  }

  /** Writes a container's record (one transaction). */
  save(record: ContainerRecord): void {
    this.upsert.run({ id: record.Id, name: record.Name, record: JSON.stringify(record), at: new Date().toISOString() });
  }

  remove(id: string): void {
    this.del.run(id);
  }

  all(): ContainerRecord[] {
    const rows = this.db.prepare('SELECT record FROM containers').all() as Array<{ record: string }>;
    const out: ContainerRecord[] = [];
    for (const r of rows) {
      try {
        out.push(JSON.parse(r.record) as ContainerRecord);
      } catch {
        /* cannot happen through save(); skipped rather than fatal */
      }
    }
    return out;
  }

  /** Writes a pod's or network's record (one transaction). */
  saveRecord(table: RecordTable, record: { Id: string; Name: string }): void {
    this.db
      .prepare(`INSERT INTO ${table} (id, name, record, updated_at) VALUES (@id, @name, @record, @at) ON CONFLICT(id) DO UPDATE SET name = @name, record = @record, updated_at = @at`)
      .run({ id: record.Id, name: record.Name, record: JSON.stringify(record), at: new Date().toISOString() });
  }

  removeRecord(table: RecordTable, id: string): void {
    this.db.prepare(`DELETE FROM ${table} WHERE id = ?`).run(id);
  }

  allRecords<T>(table: RecordTable): T[] {
    return (this.db.prepare(`SELECT record FROM ${table}`).all() as Array<{ record: string }>).map((r) => JSON.parse(r.record) as T);
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  close(): void {
    this.db.close();
  }
}
