/** dockerode, the Node Docker client, drives hyperboxd unchanged (unversioned paths, its own stream handling). */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';

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
});
