/**
 * Host-side mounts of a container's files are nosuid,nodev (issue 13): its
 * overlay root, its volume and bind mounts, a --read-only root and the binds
 * of pool and pod shares. A setuid-root file a container writes keeps its mode
 * in the guest and is inert on the host.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemonWithBusybox, type TestDaemon, until } from './helpers/daemon.js';

/** [mount point, per-mount options] of every mount under DIR. */
function mountsUnder(dir: string): Array<[string, string[]]> {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .filter((f) => f[4]!.startsWith(`${dir}/`))
    .map((f) => [f[4]!, f[5]!.split(',')]);
}

// Both storage drivers: a 9p root is a host overlay; a root on disks has host-side binds only.
for (const driver of ['overlay', 'block']) describe(`host-side mounts of container files (${driver} roots)`, () => {
  let d: TestDaemon;
  let hostDir: string;
  before(async () => {
    d = await startDaemonWithBusybox(['--storage-driver', driver, '--pool-size', '1']);
    hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-suid-'));
  });
  after(async () => {
    await d?.run(['pod', 'rm', '-f', 'suidpod']);
    await d?.stop();
    fs.rmSync(hostDir, { recursive: true, force: true });
  });

  it('are nosuid and nodev, for every kind of mount, while the guest keeps file modes', async () => {
    const ids: string[] = [];
    const start = async (args: string[]) => {
      const r = await d.run(['run', '-d', ...args, 'busybox', 'sh', '-c', '(cp /bin/busybox /sb && chmod 4755 /sb && ls -l /sb); exec sleep 1000']);
      assert.equal(r.code, 0, r.stderr);
      ids.push(r.stdout.trim());
    };
    await start(['-v', `${hostDir}:/host`, '-v', 'suidvol:/vol']);
    await start(['--read-only', '--tmpfs', '/tmp', '-v', `${hostDir}:/ro:ro`]);
    assert.equal((await d.run(['pod', 'create', '--name', 'suidpod'])).code, 0);
    await start(['--pod', 'suidpod']);
    // `run -d` returns once the process started, not once it printed.
    const logs = await until('the first container\'s ls', async () => {
      const r = await d.run(['logs', ids[0]!]);
      return r.stdout.includes('/sb') && r;
    });
    assert.match(logs.stdout, /^-rwsr-xr-x/m, 'the guest sees the setuid bit it set');
    const mounts = mountsUnder(d.dataRoot);
    assert.ok(mounts.length >= 6, JSON.stringify(mounts));
    const loose = mounts.filter(([, o]) => !o.includes('nosuid') || !o.includes('nodev'));
    assert.deepEqual(loose, [], 'every host-side mount under the data root is nosuid,nodev');
    // The bind of the host directory and the volume are among them.
    if (driver === 'overlay') assert.ok(mounts.some(([m]) => m.endsWith('/host')) && mounts.some(([m]) => m.endsWith('/vol')) && mounts.some(([m]) => m.endsWith('/ro')));
    // On disks, each bind is a host mount at <container>/binds/<n> (three here: host, vol, ro).
    else assert.ok(mounts.filter(([m]) => /\/binds\/\d+$/.test(m)).length >= 3, JSON.stringify(mounts));
    for (const id of ids) await d.run(['rm', '-f', id]);
  });
});
