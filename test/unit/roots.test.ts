/**
 * Unbinding a container root from a pod's share never deletes through a mount
 * (as root: it makes real bind mounts). The old code removed the directory
 * recursively after a failed unmount, which went through a bind mount below it
 * and deleted the host files behind it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bindRoot, unbindRoot } from '../../src/sandbox/roots.js';

const asRoot = process.getuid?.() === 0;

describe('container roots in a share', { skip: asRoot ? false : 'needs root (bind mounts)' }, () => {
  it('keeps a target with a mount below it, and the host files behind that mount', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbroots-'));
    const hostData = path.join(dir, 'host-data');
    fs.mkdirSync(hostData);
    fs.writeFileSync(path.join(hostData, 'canary'), 'precious');
    // The target itself is not a mount point (so unmounting it fails), but something below it is.
    const target = path.join(dir, 'share', 'abc123');
    fs.mkdirSync(path.join(target, 'sub'), { recursive: true });
    execFileSync('mount', ['--bind', hostData, path.join(target, 'sub')]);
    try {
      assert.equal(unbindRoot(target), false);
      assert.equal(fs.readFileSync(path.join(hostData, 'canary'), 'utf8'), 'precious');
    } finally {
      execFileSync('umount', [path.join(target, 'sub')]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('unbinds a bound root (and the mounts inside it) and removes the mount point', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbroots-'));
    const root = path.join(dir, 'root');
    const volume = path.join(dir, 'volume');
    fs.mkdirSync(path.join(root, 'data'), { recursive: true });
    fs.mkdirSync(volume);
    fs.writeFileSync(path.join(volume, 'keep'), 'x');
    execFileSync('mount', ['--bind', volume, path.join(root, 'data')]);
    const target = path.join(dir, 'share', 'abc123');
    try {
      bindRoot(target, root);
      assert.ok(fs.existsSync(path.join(target, 'data', 'keep')));
      assert.equal(unbindRoot(target), true);
      assert.equal(fs.existsSync(target), false);
      assert.equal(fs.readFileSync(path.join(volume, 'keep'), 'utf8'), 'x');
    } finally {
      execFileSync('umount', [path.join(root, 'data')]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never binds onto or unmounts through a symlink the guest planted in the share', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbroots-'));
    const victim = path.join(dir, 'host-victim');
    const hostMount = path.join(dir, 'host-mount');
    const root = path.join(dir, 'root');
    for (const d of [victim, hostMount, root, path.join(dir, 'share')]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(root, 'from-root'), 'r');
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', hostMount]);
    try {
      // As a guest would through 9p: the next container's target is a link to a host directory.
      const target = path.join(dir, 'share', 'abc123');
      fs.symlinkSync(victim, target);
      bindRoot(target, root);
      assert.equal(isMounted(victim), false, 'the host directory behind the link was mounted over');
      assert.ok(fs.lstatSync(target).isDirectory() && fs.existsSync(path.join(target, 'from-root')));
      assert.equal(unbindRoot(target), true);
      // A link to a host mount point is removed as a link; the host mount stays.
      const planted = path.join(dir, 'share', 'zzz');
      fs.symlinkSync(hostMount, planted);
      assert.equal(unbindRoot(planted), true);
      assert.equal(isMounted(hostMount), true, 'a host filesystem was unmounted through a planted link');
      assert.equal(fs.existsSync(planted), false);
    } finally {
      execFileSync('umount', [hostMount]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('binds a file (an OCI file bind) on a file it makes, not through a link the guest planted', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbroots-'));
    const hosts = path.join(dir, 'hosts');
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(hosts, '127.0.0.1 localhost\n');
    fs.writeFileSync(victim, 'precious');
    fs.mkdirSync(path.join(dir, 'share'));
    const target = path.join(dir, 'share', 'c0.bind0');
    fs.symlinkSync(victim, target);
    try {
      bindRoot(target, hosts);
      assert.ok(fs.lstatSync(target).isFile());
      assert.equal(fs.readFileSync(target, 'utf8'), '127.0.0.1 localhost\n');
      assert.equal(isMounted(victim), false);
      assert.equal(unbindRoot(target), true);
      assert.equal(fs.existsSync(target), false);
      assert.equal(fs.readFileSync(hosts, 'utf8'), '127.0.0.1 localhost\n');
      fs.mkdirSync(target); // a directory where a file is to go is refused, not deleted
      assert.throws(() => bindRoot(target, hosts), /is a directory/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function isMounted(dir: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}
