/**
 * Pull and push against a real registry (Debian's docker-registry on loopback):
 * anonymous, Basic and Bearer-token auth, manifest lists, gzip layers written by
 * skopeo, the docker CLI, and a registry that lies.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { busyboxTar, startDaemonWithBusybox, type TestDaemon } from './helpers/daemon.js';
import { docker } from './helpers/docker.js';
import { TestRegistry } from './helpers/registry.js';

let d: TestDaemon;
let reg: TestRegistry;
let xdg: string;
const env = () => ({ XDG_CONFIG_HOME: xdg });
const hb = (args: string[], input?: string) => d.run(args, { env: env(), input, timeoutMs: 120_000 });
const images = async () => (await hb(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'])).stdout;

before(async () => {
  d = await startDaemonWithBusybox();
  reg = new TestRegistry();
  await reg.start();
  xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-xdg-'));
});
after(async () => {
  await d?.stop();
  await reg?.stop();
  fs.rmSync(xdg, { recursive: true, force: true });
});

describe('registry', () => {
  it('pushes, pulls back after rmi, runs, and a second pull downloads nothing', async () => {
    const name = `${reg.host}/test/bb:1`;
    assert.equal((await hb(['import', '-c', 'CMD ["echo", "from-registry"]', busyboxTar, name])).code, 0);
    const push = await hb(['push', name]);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stdout, /The push refers to repository \[127\.0\.0\.1:\d+\/test\/bb\]/);
    assert.match(push.stdout, /1: digest: sha256:[0-9a-f]{64} size: \d+/);
    const id = (await hb(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
    assert.equal((await hb(['rmi', name])).code, 0);

    const before = reg.blobGets('test/bb');
    const pull = await hb(['pull', name]);
    assert.equal(pull.code, 0, pull.stderr);
    assert.match(pull.stdout, /Status: Downloaded newer image for/);
    assert.equal((await hb(['inspect', '-f', '{{.Id}}', name])).stdout.trim(), id);
    assert.equal((await hb(['run', '--rm', name])).stdout, 'from-registry\n');
    const afterFirst = reg.blobGets('test/bb');
    assert.ok(afterFirst > before, 'the first pull downloaded the config');

    const again = await hb(['pull', name]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /Status: Image is up to date/);
    assert.doesNotMatch(again.stdout, /Downloading|Pull complete/);
    assert.equal(reg.blobGets('test/bb'), afterFirst, 'no blob fetched the second time');
    assert.match((await hb(['images', '--digests'])).stdout, /test\/bb\s+1\s+sha256:[0-9a-f]{64}/);

    // Another repository of the same registry: the layer is mounted, not uploaded again.
    assert.equal((await hb(['tag', name, `${reg.host}/test/copy:1`])).code, 0);
    const copy = await hb(['push', `${reg.host}/test/copy:1`]);
    assert.equal(copy.code, 0, copy.stderr);
    assert.match(copy.stdout, /: Mounted from test\/bb/);
  });

  it('pulls what skopeo pushed (gzip and zstd layers), and skopeo reads what hyperbox pushed', async () => {
    const saved = path.join(xdg, 'bb.tar');
    assert.equal((await hb(['save', '-o', saved, 'busybox'])).code, 0);
    execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `docker-archive:${saved}`, `docker://${reg.host}/interop/bb:gz`]);
    const pull = await hb(['pull', `${reg.host}/interop/bb:gz`]);
    assert.equal(pull.code, 0, pull.stderr);
    const layers = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/bb:gz`], { encoding: 'utf8' })) as { layers: Array<{ mediaType: string }> };
    assert.match(layers.layers[0]!.mediaType, /gzip/);
    assert.equal((await hb(['run', '--rm', `${reg.host}/interop/bb:gz`, 'echo', 'gzip-ok'])).stdout, 'gzip-ok\n');

    // zstd layers (OCI +zstd), as skopeo and buildkit can write them. A layer of its own
    // content: skopeo would otherwise reuse the gzip blob it already pushed.
    const rootfs = path.join(xdg, 'zstd-rootfs.tar');
    const marker = path.join(xdg, 'zstd-marker');
    fs.copyFileSync(busyboxTar, rootfs);
    fs.writeFileSync(marker, 'from a zstd layer\n');
    execFileSync('tar', ['-rf', rootfs, '-C', xdg, 'zstd-marker']);
    assert.equal((await hb(['import', rootfs, 'zstdsrc:1'])).code, 0);
    const zsrc = path.join(xdg, 'zsrc.tar');
    assert.equal((await hb(['save', '-o', zsrc, 'zstdsrc:1'])).code, 0);
    assert.equal((await hb(['rmi', 'zstdsrc:1'])).code, 0);
    const ociDir = path.join(xdg, 'bb-zstd-oci');
    execFileSync('skopeo', ['copy', '--quiet', '--dest-compress', '--dest-compress-format', 'zstd', `docker-archive:${zsrc}`, `oci:${ociDir}:z`]);
    execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${ociDir}:z`, `docker://${reg.host}/interop/bb:zstd`]);
    const zlayers = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/bb:zstd`], { encoding: 'utf8' })) as { layers: Array<{ mediaType: string }> };
    assert.equal(zlayers.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    const zpull = await hb(['pull', `${reg.host}/interop/bb:zstd`]);
    assert.equal(zpull.code, 0, zpull.stderr);
    assert.equal((await hb(['run', '--rm', `${reg.host}/interop/bb:zstd`, 'cat', '/zstd-marker'])).stdout, 'from a zstd layer\n');
    // ...and saved for docker: the layer goes in uncompressed, as docker load expects.
    const zsaved = path.join(xdg, 'bbz.tar');
    assert.equal((await hb(['save', '-o', zsaved, `${reg.host}/interop/bb:zstd`])).code, 0);
    assert.match(execFileSync('skopeo', ['inspect', `docker-archive:${zsaved}`], { encoding: 'utf8' }), /"Layers"/);

    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/test/bb:1`], { encoding: 'utf8' })) as { Os: string; Architecture: string };
    assert.deepEqual([inspected.Os, inspected.Architecture], ['linux', 'amd64']);
  });

  it('selects the platform from a manifest list', async () => {
    const other = `${reg.host}/test/other:1`;
    assert.equal((await hb(['import', '-c', 'CMD ["echo", "arm"]', busyboxTar, other])).code, 0);
    assert.equal((await hb(['push', other])).code, 0);
    const raw = (ref: string) => execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    const amd = raw(`${reg.host}/test/bb:1`);
    const arm = raw(other);
    const desc = (b: Buffer, arch: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${createHash('sha256').update(b).digest('hex')}`, size: b.length, platform: { os: 'linux', architecture: arch } });
    // The index lives in test/bb, which must hold both manifests: push "other" there too.
    execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${other}`, `docker://${reg.host}/test/bb:arm`]);
    const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [desc(arm, 'arm64'), desc(amd, 'amd64')] });
    const put = await fetch(`http://${reg.host}/v2/test/bb/manifests/multi`, { method: 'PUT', headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' }, body: index });
    assert.equal(put.status, 201, await put.text());

    assert.equal((await hb(['pull', `${reg.host}/test/bb:multi`])).code, 0);
    assert.equal((await hb(['run', '--rm', `${reg.host}/test/bb:multi`])).stdout, 'from-registry\n', 'linux/amd64 by default');
    assert.equal((await hb(['pull', '--platform', 'linux/arm64', `${reg.host}/test/bb:multi`])).code, 0);
    assert.equal((await hb(['inspect', '-f', '{{.Id}}', `${reg.host}/test/bb:multi`])).stdout, (await hb(['inspect', '-f', '{{.Id}}', other])).stdout);
    const none = await hb(['pull', '--platform', 'linux/s390x', `${reg.host}/test/bb:multi`]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no matching manifest for linux\/s390x/);
  });

  it('the docker CLI pulls and pushes through hyperboxd', async () => {
    const name = `${reg.host}/viadocker/bb:2`;
    assert.equal((await docker(d, ['tag', 'busybox', name])).code, 0);
    const push = await docker(d, ['push', name]);
    assert.equal(push.code, 0, push.stderr);
    assert.equal((await docker(d, ['rmi', name])).code, 0);
    const pull = await docker(d, ['pull', name]);
    assert.equal(pull.code, 0, pull.stderr);
    assert.match(pull.stdout, new RegExp(`${name.replace(/\./g, '\\.')}`));
    const missing = await docker(d, ['pull', `${reg.host}/viadocker/none:1`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /manifest unknown/);
  });

  it('refuses a registry whose blob does not match its digest, keeping no image', async () => {
    const layer = Buffer.concat([fs.readFileSync(busyboxTar), Buffer.alloc(1024)]); // not in the store yet
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(layer).digest('hex')}`] } }));
    const digest = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
    const lie = Buffer.concat([layer.subarray(0, 1000), Buffer.from('tampered')]);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest(config), size: config.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digest(layer), size: layer.length }] }));
    const server = http.createServer((req, res) => {
      if (req.url === '/v2/') return res.writeHead(200).end('{}');
      if (req.url?.includes('/manifests/')) return res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      if (req.url?.endsWith(digest(config))) return res.writeHead(200).end(config);
      res.writeHead(200, { 'Content-Length': String(layer.length) });
      res.end(Buffer.concat([lie, Buffer.alloc(layer.length - lie.length)]));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const before = await images();
      const r = await hb(['pull', `127.0.0.1:${(server.address() as net.AddressInfo).port}/liar/img:1`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /digest mismatch/);
      assert.equal(await images(), before);
    } finally {
      server.close();
    }
  });
});

describe('registry authentication', () => {
  for (const kind of ['basic', 'token'] as const) {
    it(`${kind}: push refused without login, wrong password refused, login stores 0600 credentials, push/pull work, logout`, async () => {
      const secured = new TestRegistry({ kind, user: 'alice', password: 's3cret' });
      await secured.start();
      try {
        const name = `${secured.host}/private/bb:1`;
        assert.equal((await hb(['tag', 'busybox', name])).code, 0);
        const anon = await hb(['push', name]);
        assert.equal(anon.code, 1);
        assert.match(anon.stderr, /authentication required|unauthorized/);
        const wrong = await hb(['login', '-u', 'alice', '--password-stdin', secured.host], 'nope\n');
        assert.equal(wrong.code, 1);
        assert.match(wrong.stderr, /401 Unauthorized|incorrect username or password/);
        const ok = await hb(['login', '-u', 'alice', '--password-stdin', secured.host], 's3cret\n');
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(ok.stdout, 'Login Succeeded\n');
        const authFile = path.join(xdg, 'hyperbox', 'auth.json');
        assert.equal(fs.statSync(authFile).mode & 0o777, 0o600);
        const push = await hb(['push', name]);
        assert.equal(push.code, 0, push.stderr);
        assert.equal((await hb(['rmi', name])).code, 0);
        const pull = await hb(['pull', name]);
        assert.equal(pull.code, 0, pull.stderr);
        assert.equal((await hb(['logout', secured.host])).stdout, `Removing login credentials for ${secured.host}\n`);
        assert.doesNotMatch(fs.readFileSync(authFile, 'utf8'), new RegExp(secured.host.replace(/\./g, '\\.')));
      } finally {
        await secured.stop();
      }
    });
  }
});
