/**
 * The Docker API gaps of issue 15 through real clients: `docker ps --filter`
 * as dockerd answers it, `docker update`, `GET /distribution/{name}/json`,
 * `docker search`, and dockerode's attach (whose JSON request body is not stdin).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { busyboxTar, startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';
import { docker as cli } from './helpers/docker.js';
import { freePort } from './helpers/net.js';
import { TestRegistry } from './helpers/registry.js';

let d: TestDaemon;
let api: Docker;
let reg: TestRegistry;

before(async () => {
  d = await startDaemonWithBusybox();
  api = new Docker({ socketPath: d.socket });
  reg = new TestRegistry();
  await reg.start();
});
after(async () => {
  await cli(d, ['rm', '-f', 'f-c', 'f-u']).catch(() => undefined);
  await d?.stop();
  await reg?.stop();
});

async function ok(args: string[]): Promise<string> {
  const r = await cli(d, args, { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Names `docker ps -a --filter ...` lists, sorted. */
async function ps(filters: string[], all = true): Promise<string[]> {
  const out = await ok(['ps', ...(all ? ['-a'] : []), ...filters.flatMap((f) => ['--filter', f]), '--format', '{{.Names}}']);
  return out.split('\n').filter(Boolean).sort();
}

describe('docker ps --filter as dockerd', () => {
  let netId = '';
  let cId = '';
  before(async () => {
    netId = (await ok(['network', 'create', 'gapnet'])).trim();
    await ok(['volume', 'create', 'gapvol']);
    await ok(['import', busyboxTar, 'gapimg:v1']);
    // Creation order: f-a, f-b, f-c, f-d.
    await ok(['create', '--name', 'f-a', '--label', 'tier=web', '--label', 'env=prod', '-v', 'gapvol:/data', 'busybox', 'true']);
    const b = await cli(d, ['run', '--name', 'f-b', '--label', 'tier=web', '--network', 'gapnet', 'busybox', 'sh', '-c', 'exit 3'], { timeoutMs: 120_000 });
    assert.equal(b.code, 3, b.stderr);
    cId = (await ok(['run', '-d', '--name', 'f-c', '--label', 'tier=db', 'busybox', 'sleep', '1000'])).trim();
    await ok(['create', '--name', 'f-d', 'gapimg:v1', 'true']);
  });

  it('label: key, key=value, several ANDed', async () => {
    assert.deepEqual(await ps(['label=tier=web']), ['f-a', 'f-b']);
    assert.deepEqual(await ps(['label=tier']), ['f-a', 'f-b', 'f-c']);
    assert.deepEqual(await ps(['label=tier=web', 'label=env=prod']), ['f-a']);
    assert.deepEqual(await ps(['label=tier', 'label=env']), ['f-a']);
    assert.deepEqual(await ps(['label=tier=nope']), []);
  });

  it('name (regular expression on "/name") and id (prefix)', async () => {
    assert.deepEqual(await ps(['name=f-']), ['f-a', 'f-b', 'f-c', 'f-d']);
    assert.deepEqual(await ps(['name=f-[ab]']), ['f-a', 'f-b']);
    assert.deepEqual(await ps(['name=^/f-c$']), ['f-c']);
    assert.deepEqual(await ps(['name=^f-c$']), ['f-c'], 'with or without the slash, as dockerd');
    assert.deepEqual(await ps(['name=f-a', 'name=f-d']), ['f-a', 'f-d'], 'values of one key are ORed');
    assert.deepEqual(await ps([`id=${cId.slice(0, 10)}`]), ['f-c']);
    assert.deepEqual(await ps([`id=${cId.slice(5, 20)}`]), [], 'a prefix, not a substring');
  });

  it('status, and a status filter lists stopped containers without -a', async () => {
    assert.deepEqual(await ps(['status=created']), ['f-a', 'f-d']);
    assert.deepEqual(await ps(['status=exited']), ['f-b']);
    assert.deepEqual(await ps(['status=running']), ['f-c']);
    assert.deepEqual(await ps(['status=exited', 'status=running']), ['f-b', 'f-c']);
    assert.deepEqual(await ps(['status=paused']), []);
    assert.deepEqual(await ps(['status=exited'], false), ['f-b']);
    assert.deepEqual(await ps(['name=f-'], false), ['f-c'], 'without -a or status: running only');
    const bad = await cli(d, ['ps', '--filter', 'status=sleeping']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /invalid filter 'status=sleeping'/);
  });

  it("hyperbox's own CLI sends the same filters (-f, --filter, repeatable)", async () => {
    const r = await d.run(['ps', '-a', '-f', 'label=tier=web', '--filter', 'status=exited', '--format', '{{.Names}}']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter(Boolean), ['f-b']);
    const bad = await d.run(['ps', '--filter', 'status']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /expected name=value/);
  });

  it('exited (exit code, stopped containers that ran)', async () => {
    assert.deepEqual(await ps(['exited=3']), ['f-b']);
    assert.deepEqual(await ps(['exited=3'], false), [], 'as with dockerd, exited does not imply -a');
    assert.deepEqual(await ps(['exited=0']), [], 'f-a and f-d never ran');
    const bad = await cli(d, ['ps', '-a', '--filter', 'exited=x']);
    assert.match(bad.stderr, /invalid filter 'exited=x'/);
  });

  it('ancestor: name, name:tag, ID; unknown image matches nothing', async () => {
    assert.deepEqual(await ps(['ancestor=busybox']), ['f-a', 'f-b', 'f-c']);
    assert.deepEqual(await ps(['ancestor=busybox:latest']), ['f-a', 'f-b', 'f-c']);
    const gapId = (await ok(['image', 'inspect', '-f', '{{.Id}}', 'gapimg:v1'])).trim();
    assert.deepEqual(await ps(['ancestor=gapimg:v1']), ['f-d']);
    assert.deepEqual(await ps([`ancestor=${gapId}`]), ['f-d']);
    assert.deepEqual(await ps([`ancestor=${gapId.slice(7, 19)}`]), ['f-d']);
    assert.deepEqual(await ps(['ancestor=no-such-image']), []);
  });

  it('network (name or ID) and volume (name or destination)', async () => {
    assert.deepEqual(await ps(['network=gapnet']), ['f-b']);
    assert.deepEqual(await ps([`network=${netId}`]), ['f-b']);
    assert.deepEqual(await ps(['network=bridge', 'name=f-']), ['f-a', 'f-c', 'f-d']);
    assert.deepEqual(await ps(['volume=gapvol']), ['f-a']);
    assert.deepEqual(await ps(['volume=/data']), ['f-a']);
    assert.deepEqual(await ps(['volume=/elsewhere']), []);
  });

  it('before and since: creation order, by name or ID', async () => {
    assert.deepEqual(await ps(['before=f-c', 'name=f-']), ['f-a', 'f-b']);
    assert.deepEqual(await ps([`before=${cId}`, 'name=f-']), ['f-a', 'f-b']);
    assert.deepEqual(await ps(['since=f-b']), ['f-c', 'f-d']);
    assert.deepEqual(await ps(['since=f-a', 'before=f-d']), ['f-b', 'f-c']);
    const missing = await cli(d, ['ps', '-a', '--filter', 'since=no-such']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such container: no-such/);
  });

  it('health (no health checks: every container is "none"), and an unknown key is refused', async () => {
    assert.deepEqual(await ps(['health=none', 'name=f-']), ['f-a', 'f-b', 'f-c', 'f-d']);
    assert.deepEqual(await ps(['health=healthy']), []);
    assert.deepEqual(await ps(['is-task=false', 'name=f-']), ['f-a', 'f-b', 'f-c', 'f-d']);
    assert.deepEqual(await ps(['is-task=true']), []);
    const bad = await cli(d, ['ps', '--filter', 'colour=red']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /invalid filter 'colour'/);
  });

  it('publish and expose (ports of running containers); created last, removed at the end', async () => {
    const port = await freePort('127.0.0.1');
    await ok(['run', '-d', '--name', 'g-p', '-p', `127.0.0.1:${port}:80/tcp`, 'busybox', 'sleep', '1000']);
    try {
      assert.deepEqual(await ps([`publish=${port}`]), ['g-p']);
      assert.deepEqual(await ps([`publish=${port}/tcp`]), ['g-p']);
      assert.deepEqual(await ps([`publish=${port}/udp`]), []);
      assert.deepEqual(await ps(['expose=80']), ['g-p']);
      assert.deepEqual(await ps(['expose=79-81/tcp']), ['g-p']);
      assert.deepEqual(await ps(['expose=81']), []);
      const bad = await cli(d, ['ps', '--filter', 'publish=1.2.3.4:80']);
      assert.match(bad.stderr, /filter for 'publish' should not contain ':'/);
    } finally {
      await ok(['rm', '-f', 'g-p']);
    }
  });

  it('dockerode listContainers with label filters', async () => {
    const list = await api.listContainers({ all: true, filters: { label: ['tier=web', 'env'] } });
    assert.deepEqual(
      list.map((c) => c.Names[0]),
      ['/f-a'],
    );
  });
});

describe('docker update', () => {
  it('changes the restart policy, which the next exit follows', async () => {
    // Told to exit through a bind, by the host: an exec creating the file raced the exit it
    // caused (an exec still running when the main process exits is killed with the
    // container, 137, as with runc), and a fixed second's grace is a guess at a busy machine.
    const sig = fs.mkdtempSync(path.join(d.dataRoot, 'sig-'));
    await ok(['run', '-d', '--name', 'f-u', '-v', `${sig}:/sig`, 'busybox', 'sh', '-c', 'while [ ! -e /sig/go ]; do sleep 0.2; done; exit 1']);
    assert.equal((await ok(['update', '--restart', 'on-failure:1', 'f-u'])).trim(), 'f-u');
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', 'f-u'])).trim(), 'on-failure:1');
    fs.writeFileSync(path.join(sig, 'go'), '');
    // One restart (the file is still there, so it exits again at once), then it stays down.
    await until('the restart policy to restart it once', async () => (await ok(['inspect', '-f', '{{.RestartCount}} {{.State.Status}}', 'f-u'])).trim() === '1 exited', 120_000);
    await ok(['update', '--restart', 'always', 'f-u']);
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', 'f-u'])).trim(), 'always');
    await ok(['update', '--restart', 'no', 'f-u']);
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', 'f-u'])).trim(), 'no');
  });

  it('sizes a stopped container for its next start; a running VM cannot be resized', async () => {
    await ok(['update', '--memory', '256m', '--cpus', '2', 'f-a']);
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}', 'f-a'])).trim(), '268435456 2000000000');
    const running = await cli(d, ['update', '--memory', '256m', 'f-c']);
    assert.notEqual(running.code, 0);
    assert.match(running.stderr, /cannot update memory or CPUs of a running container: its VM's size is fixed when it starts/);
    const shares = await cli(d, ['update', '--cpu-shares', '512', 'f-a']);
    assert.notEqual(shares.code, 0);
    assert.match(shares.stderr, /updating CpuShares is not supported/);
  });

  it('dockerode update answers {"Warnings": []}', async () => {
    const res = (await api.getContainer('f-a').update({ RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 } })) as { Warnings: unknown[] };
    assert.deepEqual(res, { Warnings: [] });
    assert.equal((await api.getContainer('f-a').inspect()).HostConfig.RestartPolicy?.Name, 'unless-stopped');
  });

  it('the updated policy and size are saved: a restarted daemon has them', async () => {
    await ok(['update', '--restart', 'no', 'f-a']);
    await ok(['update', '--restart', 'on-failure:3', 'f-u']);
    await d.restart();
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', 'f-u'])).trim(), 'on-failure:3');
    assert.equal((await ok(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}', 'f-a'])).trim(), 'no 268435456');
  });
});

describe('distribution and search', () => {
  let digest = '';
  before(async () => {
    const name = `${reg.host}/gaps/bb`;
    await api.getImage('busybox').tag({ repo: name, tag: '1' });
    const pushed = (await api.getImage(`${name}:1`).push({ authconfig: {} })) as unknown as NodeJS.ReadableStream;
    await new Promise((resolve, reject) =>
      api.modem.followProgress(
        pushed,
        (err: Error | null) => (err ? reject(err) : resolve(undefined)),
        (m: { aux?: { Digest?: string } }) => (digest = m.aux?.Digest ?? digest),
      ),
    );
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  });

  it('GET /distribution/{name}/json: descriptor and platforms of a registry image', async () => {
    const info = (await api.getImage(`${reg.host}/gaps/bb:1`).distribution({})) as {
      Descriptor: { mediaType: string; digest: string; size: number };
      Platforms: Array<{ os: string; architecture: string }>;
    };
    assert.equal(info.Descriptor.digest, digest);
    assert.match(info.Descriptor.mediaType, /^application\/vnd\.(oci\.image|docker\.distribution)\.manifest/);
    assert.ok(info.Descriptor.size > 0);
    assert.deepEqual(
      info.Platforms.map((p) => `${p.os}/${p.architecture}`),
      ['linux/amd64'],
    );
  });

  it('an unknown tag is 404, an unreachable registry an error naming it', async () => {
    await assert.rejects(api.getImage(`${reg.host}/gaps/bb:nope`).distribution({}), (e: { statusCode?: number; message: string }) => e.statusCode === 404 && /manifest unknown/.test(e.message));
    await assert.rejects(api.getImage('127.0.0.1:1/x/y:1').distribution({}), (e: { statusCode?: number; message: string }) => e.statusCode === 500 && /cannot reach registry 127\.0\.0\.1:1/.test(e.message));
  });

  it('docker search: a registry catalog, and a clear error for Docker Hub', async () => {
    const found = await ok(['search', '--format', '{{.Name}}', `${reg.host}/gaps`]);
    assert.equal(found.trim(), `${reg.host}/gaps/bb`);
    assert.equal((await ok(['search', '--format', '{{.Name}}', '--filter', 'stars=0', '--filter', 'is-official=false', `${reg.host}/gaps`])).trim(), `${reg.host}/gaps/bb`);
    assert.equal((await ok(['search', '--format', '{{.Name}}', '--filter', 'is-official=true', `${reg.host}/gaps`])).trim(), '', 'a catalog has no official images');
    assert.equal((await ok(['search', '--format', '{{.Name}}', `${reg.host}/nothing-like-it`])).trim(), '');
    const badFilter = await cli(d, ['search', '--filter', 'colour=red', `${reg.host}/gaps`]);
    assert.match(badFilter.stderr, /invalid filter 'colour'/);
    const hub = await cli(d, ['search', 'busybox']);
    assert.notEqual(hub.code, 0);
    assert.match(hub.stderr, /hyperbox has no index to search/);
  });
});

describe('dockerode attach', () => {
  it('ignores the JSON request body: only bytes after the upgrade are stdin', async () => {
    const c = await api.createContainer({ Image: 'busybox', Cmd: ['sh'], OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true });
    const stream = await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true });
    let out = '';
    let err = '';
    api.modem.demuxStream(stream, { write: (b: Buffer) => (out += b.toString()) } as never, { write: (b: Buffer) => (err += b.toString()) } as never);
    const ended = new Promise((r) => stream.on('end', r));
    await c.start();
    stream.write('printf "%s-%s\\n" ran $((40+2))\nexit 4\n');
    const res = (await c.wait()) as { StatusCode: number };
    await ended;
    assert.equal(err, '');
    assert.equal(out, 'ran-42\n');
    assert.equal(res.StatusCode, 4);
    await c.remove();
  });
});
