/** dockerode, the Node Docker client, drives hyperboxd unchanged (unversioned paths, its own stream handling). */
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';
import { TestRegistry } from './helpers/registry.js';
import tar from 'tar-stream';

let d: TestDaemon;
let docker: Docker;

before(async () => {
  d = await startDaemonWithBusybox();
  docker = new Docker({ socketPath: d.socket });
});
after(async () => d?.stop());

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

describe('dockerode against hyperboxd', () => {
  it('pings and reads version and info', async () => {
    assert.equal(String(await docker.ping()), 'OK');
    const v = await docker.version();
    assert.equal(v.ApiVersion, '1.51');
    const info = await docker.info();
    assert.ok(info.Images >= 1);
  });

  it('creates, attaches, starts and waits; stdout and stderr demultiplexed', async () => {
    const c = await docker.createContainer({ Image: 'busybox', Cmd: ['sh', '-c', 'echo out; echo err >&2; exit 5'], AttachStdout: true, AttachStderr: true });
    const stream = await c.attach({ stream: true, stdout: true, stderr: true });
    const out = collect();
    const err = collect();
    docker.modem.demuxStream(stream, out.stream, err.stream);
    const ended = new Promise((r) => stream.on('end', r));
    await c.start();
    const res = (await c.wait()) as { StatusCode: number };
    await ended;
    assert.equal(res.StatusCode, 5);
    assert.equal(out.text(), 'out\n');
    assert.equal(err.text(), 'err\n');
    const logs = await c.logs({ stdout: true, stderr: true, follow: false });
    assert.match(logs.toString('latin1'), /out\n[\s\S]*err\n/);
    await c.remove();
  });

  it('execs with exit codes, lists, inspects, tops, and removes a running container', async () => {
    const c = await docker.createContainer({ Image: 'busybox', Cmd: ['sleep', '1000'], name: 'node-web' });
    await c.start();
    const list = await docker.listContainers({ filters: { name: ['node-web'] } });
    assert.equal(list.length, 1);
    assert.equal(list[0]!.State, 'running');

    const exec = await c.exec({ Cmd: ['sh', '-c', 'echo hi-exec; exit 3'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    const out = collect();
    docker.modem.demuxStream(stream, out.stream, new PassThrough());
    await new Promise((r) => stream.on('end', r));
    assert.equal(out.text(), 'hi-exec\n');
    await until('exec exit code', async () => ((await exec.inspect()).Running ? false : true));
    assert.equal((await exec.inspect()).ExitCode, 3);

    const info = await c.inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.Name, '/node-web');
    const top = (await c.top()) as { Processes: string[][] };
    assert.ok(top.Processes.some((p) => p.at(-1) === 'sleep 1000'));
    await c.remove({ force: true });
    await assert.rejects(c.inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
  });

  it('streams events and lists images', async () => {
    const events = (await docker.getEvents({ filters: { type: ['container'] } })) as unknown as NodeJS.ReadableStream;
    const seen: string[] = [];
    events.on('data', (c: Buffer) => {
      for (const line of c.toString().split('\n').filter(Boolean)) seen.push((JSON.parse(line) as { Action: string }).Action);
    });
    const c = await docker.createContainer({ Image: 'busybox', Cmd: ['true'] });
    await c.start();
    await c.wait();
    await c.remove();
    await until('events', () => ['create', 'start', 'die', 'destroy'].every((a) => seen.includes(a)));
    (events as unknown as { destroy(): void }).destroy();
    const images = await docker.listImages();
    assert.ok(images.some((i) => i.RepoTags?.includes('busybox:latest')));
  });

  it('copies files in and out, commits, saves, loads, pushes and pulls', async () => {
    const c = await docker.createContainer({ Image: 'busybox', Cmd: ['sleep', '1000'] });
    await c.start();
    const pack = tar.pack();
    pack.entry({ name: 'greeting.txt' }, 'hello from dockerode\n');
    pack.finalize();
    await c.putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/tmp' });
    const out = (await c.getArchive({ path: '/tmp/greeting.txt' })) as unknown as NodeJS.ReadableStream;
    const extract = tar.extract();
    let content = '';
    const done = (async () => {
      for await (const entry of extract) for await (const chunk of entry) content += chunk;
    })();
    out.pipe(extract as unknown as NodeJS.WritableStream);
    await done;
    assert.equal(content, 'hello from dockerode\n');
    const changes = (await c.changes()) as Array<{ Path: string; Kind: number }>;
    assert.ok(changes.some((x) => x.Path === '/tmp/greeting.txt' && x.Kind === 1));

    const committed = (await c.commit({ repo: 'node-snap', tag: '1', comment: 'via dockerode' })) as { Id: string };
    assert.match(committed.Id, /^sha256:/);
    await c.remove({ force: true });

    const saved = (await docker.getImage('node-snap:1').get()) as unknown as NodeJS.ReadableStream;
    const chunks: Buffer[] = [];
    for await (const chunk of saved as AsyncIterable<Buffer>) chunks.push(chunk);
    await docker.getImage('node-snap:1').remove();
    const loadStream = (await docker.loadImage(Readable.from([Buffer.concat(chunks)]))) as unknown as NodeJS.ReadableStream;
    await new Promise((resolve, reject) => docker.modem.followProgress(loadStream, (err: Error | null) => (err ? reject(err) : resolve(undefined))));
    assert.equal((await docker.getImage('node-snap:1').inspect()).Id, committed.Id);

    const reg = new TestRegistry();
    await reg.start();
    try {
      const name = `${reg.host}/node/snap`;
      await docker.getImage('node-snap:1').tag({ repo: name, tag: '1' });
      const pushed = (await docker.getImage(`${name}:1`).push({ authconfig: {} })) as unknown as NodeJS.ReadableStream;
      await new Promise((resolve, reject) => docker.modem.followProgress(pushed, (err: Error | null) => (err ? reject(err) : resolve(undefined))));
      await docker.getImage(`${name}:1`).remove();
      const pulled = (await docker.pull(`${name}:1`)) as NodeJS.ReadableStream;
      await new Promise((resolve, reject) => docker.modem.followProgress(pulled, (err: Error | null) => (err ? reject(err) : resolve(undefined))));
      const run = await docker.createContainer({ Image: `${name}:1`, Cmd: ['cat', '/tmp/greeting.txt'] });
      await run.start();
      await run.wait();
      assert.match((await run.logs({ stdout: true })).toString('latin1'), /hello from dockerode/);
      await run.remove();
    } finally {
      await reg.stop();
    }
  });
});
