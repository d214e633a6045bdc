/**
 * A real distribution, not just busybox: a debootstrapped Debian 12 root
 * filesystem imported as an image runs its own dynamically linked tools in a VM.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { repo, TestDaemon } from './helpers/daemon.js';

const debianTar = path.join(repo, 'build/debian-rootfs.tar');
let d: TestDaemon;

before(async () => {
  assert.ok(fs.existsSync(debianTar), 'build/debian-rootfs.tar missing: run npm run setup');
  d = new TestDaemon();
  await d.start();
  const r = await d.run(['import', '-c', 'CMD ["bash"]', debianTar, 'debian:bookworm'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
});

after(async () => d?.stop());

test('debootstrapped Debian runs cat /etc/os-release and apt-get --version in a VM', async () => {
  const r = await d.run(['run', '--rm', 'debian:bookworm', 'sh', '-c', 'cat /etc/os-release; apt-get --version | head -1; id -un'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /PRETTY_NAME="Debian GNU\/Linux 12 \(bookworm\)"/);
  assert.match(r.stdout, /^apt 2\.6\.\d+/m);
  assert.match(r.stdout, /^root$/m);
});

test('a second container of the same image reuses the prepared root filesystem', async () => {
  const r = await d.run(['run', '--rm', 'debian:bookworm', 'dpkg-query', '-W', '-f', '${Package}\\n', 'bash'], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'bash');
  assert.equal(fs.readdirSync(path.join(d.dataRoot, 'data', 'rootfs')).filter((f) => !f.includes('.tmp-')).length, 1);
});
