/**
 * Files that appear whole or not at all: written under a hidden temporary name
 * beside their final one, made durable, then renamed into place, so a crash
 * never leaves a complete name over missing data. And sparse copies of disk
 * images with a spare kept ready: the next copy is then a rename, not a `cp`
 * (a process start, 6-8 ms of a container start's host side).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A temporary name beside FINAL, hidden (`.<name>.tmp-<hex>`: a sweep of stale ones can match it). */
export function temporaryName(final: string): string {
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${randomBytes(4).toString('hex')}`);
}

/**
 * Readies a finished temporary file for publishing: root-owned (if we are
 * root; a daemon run as another user keeps its own files), 0600, and on disk.
 */
export function seal(file: string): void {
  fs.chmodSync(file, 0o600);
  if (process.getuid?.() === 0) fs.chownSync(file, 0, 0);
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Renames TMP to FINAL and makes the rename durable. */
export function publish(tmp: string, final: string): void {
  fs.renameSync(tmp, final);
  try {
    const fd = fs.openSync(path.dirname(final), 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* a directory that cannot be synced: the rename stands */
  }
}

/** FINAL as a sparse copy of SRC (`cp`: reflinks where the filesystem can), sealed and published; replaces an existing FINAL. */
export async function sparseCopy(src: string, final: string): Promise<void> {
  const tmp = temporaryName(final);
  try {
    await run('cp', ['--reflink=auto', '--sparse=always', src, tmp]);
    seal(tmp);
    publish(tmp, final);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** The copy of SRC kept ready for the next caller. No guest has seen a spare. */
export const spareOf = (src: string): string => `${src}.spare`;
/** Spare refills running, by spare path: one at a time each. */
const refills = new Map<string, Promise<void>>();

/**
 * DEST as a copy of SRC: the spare made ahead if one is ready (a rename: one
 * taker only), else a copy of its own; then a new spare is made in the
 * background. The spare was sealed when it was made; its rename needs no
 * directory sync of its own: the guest's first flush of the disk commits the
 * filesystem's journal, the rename with it. An existing DEST is replaced:
 * callers check for it first.
 */
export async function copyViaSpare(src: string, dest: string): Promise<void> {
  const spare = spareOf(src);
  try {
    fs.renameSync(spare, dest);
  } catch {
    // None ready (or on another filesystem): a copy of our own.
    await sparseCopy(src, dest);
  }
  if (!refills.has(spare)) {
    const refill = (fs.existsSync(spare) ? Promise.resolve() : sparseCopy(src, spare)).catch(() => undefined).finally(() => refills.delete(spare));
    refills.set(spare, refill);
  }
}
