/**
 * Image builds with the classic builder API (POST /build), through real
 * clients: the docker CLI 28 (DOCKER_BUILDKIT=0, and plain `docker build`,
 * which falls back to the classic builder when no buildx plugin is
 * installed), dockerode's buildImage, and `hyperbox build`. RUN steps boot
 * real VM clones, so the Dockerfiles here keep few of them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { spawn } from 'node:child_process';
import { startDaemonWithBusybox, until, type TestDaemon } from './helpers/daemon.js';
import { docker as dockerCli, dockerEnv } from './helpers/docker.js';
import { TestRegistry } from './helpers/registry.js';

let d: TestDaemon;
let api: Docker;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hbt-build-'));

before(async () => {
  d = await startDaemonWithBusybox();
  api = new Docker({ socketPath: d.socket });
});
after(async () => {
  await d?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A context directory with these files (a string is content; mode via [content, mode]). */
function context(name: string, files: Record<string, string | [string, number]>): string {
  const dir = path.join(work, name);
  for (const [rel, v] of Object.entries(files)) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const [content, mode] = Array.isArray(v) ? v : [v, 0o644];
    fs.writeFileSync(p, content, { mode });
  }
  return dir;
}

/** The docker CLI as a user runs it; `classic` forces the classic builder (DOCKER_BUILDKIT=0). */
const plain = (args: string[]) => dockerCli(d, args, { timeoutMs: 180_000 });
const classic = (args: string[]) => dockerCli(d, args, { timeoutMs: 180_000, env: { DOCKER_BUILDKIT: '0' } });

async function tarBuffer(entries: Array<Partial<tar.Header> & { name: string; body?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const { body, ...h } of entries) pack.entry({ mode: 0o644, ...h }, body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** dockerode's build: the messages, and the image ID of its aux message (or the error). */
async function dockerodeBuild(src: NodeJS.ReadableStream | { context: string; src: string[] }, opts: Record<string, unknown>) {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await api.buildImage(src as never, opts);
  } catch (err) {
    return { text: '', id: undefined, error: (err as Error).message }; // refused before the build began (as dockerd: an HTTP error)
  }
  const msgs: Array<{ stream?: string; aux?: { ID: string }; error?: string }> = await new Promise((res, rej) => api.modem.followProgress(stream, (err, out) => (err ? rej(err) : res(out))));
  return { text: msgs.map((m) => m.stream ?? '').join(''), id: msgs.find((m) => m.aux)?.aux?.ID, error: msgs.find((m) => m.error)?.error };
}

const appDockerfile = `# syntax is ignored by the classic builder
ARG BASE=busybox
FROM \${BASE}
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    MODE="prod mode"
WORKDIR $APP_HOME
COPY --chown=1000:1000 *.txt conf/ ./
ADD bundle.tar /opt/
SHELL ["/bin/sh", "-ec"]
RUN echo "$GREETING from $MODE" > made.txt && \\
    id -u > owner-seen.txt
RUN ["sh", "-c", "stat -c '%u %a' notes.txt > stat.txt"]
LABEL org.example.kind=test "second label"=yes
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --retries=2 CMD test -f made.txt
USER 1000
ENTRYPOINT ["sh", "-c"]
CMD ["cat made.txt stat.txt hello.txt x.conf /opt/inner/file"]
`;

describe('docker build (classic builder) against hyperboxd', () => {
  let appDir: string;
  let firstId = '';

  it('builds every instruction with DOCKER_BUILDKIT=0; the image runs and carries its config', async () => {
    const bundle = await tarBuffer([{ name: 'inner/file', body: 'from the bundle' }]);
    appDir = context('app', {
      Dockerfile: appDockerfile,
      'hello.txt': 'hi',
      'notes.txt': ['n', 0o600],
      'conf/x.conf': 'conf',
      '.dockerignore': 'secret*\n**/*.tmp\n',
      'secret.txt': 'do not send',
      'conf/junk.tmp': 'junk',
    });
    fs.writeFileSync(path.join(appDir, 'bundle.tar'), bundle);
    const r = await classic(['build', '-t', 'app:1', '-t', 'app:latest', '--build-arg', 'GREETING=howdy', '--label', 'built.by=test', appDir]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Step 1\/18 : ARG BASE=busybox/);
    assert.match(r.stdout, /Step 9\/18 : RUN echo/);
    assert.match(r.stdout, / ---> Running in [0-9a-f]{12}/);
    assert.match(r.stdout, /Successfully built ([0-9a-f]{12})\nSuccessfully tagged app:1\nSuccessfully tagged app:latest/);
    firstId = /Successfully built ([0-9a-f]{12})/.exec(r.stdout)![1]!;

    const run = await plain(['run', '--rm', 'app:1']);
    assert.equal(run.code, 0, run.stderr);
    // RUN saw the build arg and ENV; --chown applied (uid 1000), modes kept; ADD unpacked the tar.
    assert.equal(run.stdout, 'howdy from prod mode\n1000 600\nhiconffrom the bundle');
    const ls = await plain(['run', '--rm', '--entrypoint', 'ls', 'app:1', '-A', '/srv/app']);
    assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['hello.txt', 'made.txt', 'notes.txt', 'owner-seen.txt', 'stat.txt', 'x.conf']);

    const [info] = JSON.parse((await plain(['image', 'inspect', 'app:1'])).stdout) as Array<{ Config: Record<string, unknown> }>;
    const cfg = info!.Config;
    assert.ok((cfg.Env as string[]).includes('MODE=prod mode'));
    assert.ok(!(cfg.Env as string[]).some((e) => e.startsWith('GREETING=')), 'build args are not kept in the image');
    assert.equal(cfg.WorkingDir, '/srv/app');
    assert.equal(cfg.User, '1000');
    assert.deepEqual(cfg.Entrypoint, ['sh', '-c']);
    assert.deepEqual(Object.keys(cfg.ExposedPorts as object).sort(), ['53/udp', '8080/tcp']);
    assert.deepEqual(cfg.Volumes, { '/data': {} });
    assert.equal(cfg.StopSignal, 'SIGQUIT');
    assert.deepEqual(cfg.Shell, ['/bin/sh', '-ec']);
    assert.deepEqual(cfg.Healthcheck, { Test: ['CMD-SHELL', 'test -f made.txt'], Interval: 5e9, Retries: 2 });
    assert.deepEqual(cfg.Labels, { 'org.example.kind': 'test', 'second label': 'yes', 'built.by': 'test' });

    const hist = await plain(['history', '--no-trunc', '--format', '{{.CreatedBy}}', 'app:1']);
    assert.match(hist.stdout, /\|1 GREETING=howdy \/bin\/sh -ec echo "\$GREETING from \$MODE"/);
    assert.match(hist.stdout, /COPY --chown=1000:1000 \*\.txt conf\/ in \/srv\/app/);
    const images = await plain(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.deepEqual(images.stdout.trim().split('\n').sort(), ['app:1', 'app:latest', 'busybox:latest'], 'step images are hidden');
    const all = await plain(['images', '-a', '-q']);
    assert.ok(all.stdout.trim().split('\n').length > 10, 'images -a lists the step images');
  });

  it('rebuilds unchanged from the cache with plain `docker build` (no buildx: the classic builder, with a warning)', async () => {
    // --compress: the context arrives gzip'd.
    const r = await plain(['build', '--compress', '-q', '-t', 'app:1', '--build-arg', 'GREETING=howdy', '--label', 'built.by=test', appDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /legacy builder is deprecated/);
    assert.match(r.stdout.trim(), new RegExp(`^sha256:${firstId}`));
    const verbose = await plain(['build', '--build-arg', 'GREETING=howdy', '--label', 'built.by=test', appDir]);
    assert.equal((verbose.stdout.match(/---> Using cache/g) ?? []).length, 17, verbose.stdout);
    assert.doesNotMatch(verbose.stdout, /Running in/);
  });

  it('a changed source invalidates the cache from its COPY on', async () => {
    fs.writeFileSync(path.join(appDir, 'conf/x.conf'), 'CONF');
    const r = await classic(['build', '-t', 'app:2', '--build-arg', 'GREETING=howdy', appDir]);
    assert.equal(r.code, 0, r.stderr);
    const steps = r.stdout.split(/^Step /m).slice(1);
    const cached = steps.map((s) => s.includes('Using cache'));
    assert.deepEqual(cached.slice(0, 6), [false, false, true, true, true, false], r.stdout); // ARG, FROM, ARG, ENV, WORKDIR, COPY
    assert.ok(cached.slice(6).every((c) => !c), 'everything after the changed COPY runs again');
    assert.equal((await plain(['run', '--rm', '--entrypoint', 'cat', 'app:2', 'x.conf'])).stdout, 'CONF');
  });

  it('multi-stage with --target and -f elsewhere in the context; ONBUILD triggers run in the child', async () => {
    const dir = context('multi', {
      'build/Dockerfile.multi': `FROM busybox AS builder
RUN mkdir /out && echo artifact > /out/a && echo extra > /out/b
FROM scratch AS tiny
COPY --from=builder /out/a /a
FROM busybox AS base
ONBUILD COPY marker /marker
FROM base
COPY --from=tiny /a /from-tiny
CMD ["cat", "/marker", "/from-tiny"]
`,
      marker: 'triggered\n',
    });
    const tiny = await classic(['build', '-f', path.join(dir, 'build/Dockerfile.multi'), '--target', 'tiny', '-t', 'tiny', dir]);
    assert.equal(tiny.code, 0, tiny.stderr);
    assert.match(tiny.stdout, /Step 4\/4 : COPY --from=builder/);
    const save = await plain(['image', 'inspect', '--format', '{{len .RootFS.Layers}} {{json .Config.Cmd}}', 'tiny']);
    assert.equal(save.stdout.trim(), '1 null', 'a scratch stage holds only its COPY');
    const full = await classic(['build', '-f', path.join(dir, 'build/Dockerfile.multi'), '-t', 'multi', dir]);
    assert.equal(full.code, 0, full.stderr);
    assert.match(full.stdout, /# Executing 1 build trigger/);
    assert.equal((full.stdout.match(/Running in/g) ?? []).length, 0, 'the builder stage came from the cache');
    assert.equal((await plain(['run', '--rm', 'multi'])).stdout, 'triggered\nartifact\n');
  });

  it('builds from a Dockerfile on stdin (no context) and from -f - with a context', async () => {
    const r = await dockerCli(d, ['build', '-t', 'stdin-df', '-'], { input: 'FROM busybox\nLABEL from=stdin\n', env: { DOCKER_BUILDKIT: '0' } });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal((await plain(['image', 'inspect', '--format', '{{.Config.Labels.from}}', 'stdin-df'])).stdout.trim(), 'stdin');
    const dir = context('stdin-ctx', { f: 'ctx file\n' });
    const f = await dockerCli(d, ['build', '-t', 'stdin-f', '-f', '-', dir], { input: 'FROM busybox\nCOPY f /f\n', env: { DOCKER_BUILDKIT: '0' } });
    assert.equal(f.code, 0, f.stderr);
    assert.equal((await plain(['run', '--rm', 'stdin-f', 'cat', '/f'])).stdout, 'ctx file\n');
  });

  it('errors name the Dockerfile line (RUN failure, unknown instruction, missing source, offline ADD URL, platform)', async () => {
    const cases: Array<[string, RegExp]> = [
      ['FROM busybox\nENV A=1\nRUN echo before; exit 3\n', /line 3: RUN: The command '\/bin\/sh -c echo before; exit 3' returned a non-zero code: 3/],
      ['FROM busybox\nFROBNICATE x\n', /line 2: unknown instruction: FROBNICATE/],
      ['FROM busybox\n\nCOPY nothere /x\n', /line 3: COPY: .*file not found in build context.*nothere/],
      ['FROM busybox\nADD http://127.0.0.1:9/f.tgz /f\n', /line 2: ADD: ADD failed: cannot download http:\/\/127\.0\.0\.1:9\/f\.tgz/],
      ['FROM --platform=linux/arm64 busybox\n', /line 1: FROM: platform "linux\/arm64" is not supported/],
      ['FROM busybox\nCOPY a b c\n', /line 2: COPY: .*(destination must be a directory|file not found)/],
    ];
    for (const [i, [text, want]] of cases.entries()) {
      const dir = context(`err${i}`, { Dockerfile: text, a: 'a', b: 'b' });
      const r = await classic(['build', dir]);
      assert.equal(r.code, 1, `case ${i}: ${r.stdout}`);
      assert.match(r.stderr, want, `case ${i}`);
    }
    const exitRun = await classic(['build', context('err-out', { Dockerfile: 'FROM busybox\nRUN echo visible-output; false\n' })]);
    assert.match(exitRun.stdout, /visible-output/, 'a failing step\'s output is shown');
    const leftovers = await plain(['ps', '-a', '-q']);
    assert.equal(leftovers.stdout.trim(), '', 'failed steps leave no containers');
  });
});

describe('other clients and a hostile context', () => {
  it('dockerode buildImage with a tar stream and with {context, src}; .dockerignore applies to a raw stream', async () => {
    const body = await tarBuffer([
      { name: 'Dockerfile', body: 'FROM busybox\nCOPY . /ctx/\nCMD ["ls", "-A", "/ctx"]\n' },
      { name: '.dockerignore', body: 'ignored\n' },
      { name: 'kept', body: 'k' },
      { name: 'ignored', body: 'i' },
    ]);
    const a = await dockerodeBuild(Readable.from([body]), { t: 'node-a' });
    assert.equal(a.error, undefined, a.text);
    assert.match(a.id ?? '', /^sha256:[0-9a-f]{64}$/);
    const out = await plain(['run', '--rm', 'node-a']);
    assert.deepEqual(out.stdout.trim().split('\n').sort(), ['.dockerignore', 'Dockerfile', 'kept']);

    const dir = context('node-src', { Dockerfile: 'FROM busybox\nCOPY f /f\nCMD ["cat", "/f"]\n', f: 'listed file\n', other: 'x' });
    const b = await dockerodeBuild({ context: dir, src: ['Dockerfile', 'f'] }, { t: 'node-b', buildargs: { UNUSED: '1' } });
    assert.equal(b.error, undefined, b.text);
    assert.match(b.text, /build-args \[UNUSED\] were not consumed/);
    assert.equal((await plain(['run', '--rm', 'node-b'])).stdout, 'listed file\n');
  });

  it('`hyperbox build` shows the steps and builds the same image; --no-cache builds again', async () => {
    const dir = context('cli', { Dockerfile: 'FROM busybox\nCOPY f /f\nCMD ["cat", "/f"]\n', f: 'via hyperbox\n' });
    const r = await d.run(['build', '-t', 'hb-cli', dir], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Step 2\/3 : COPY f \/f/);
    assert.match(r.stderr, /Built [0-9a-f]{12} in \d/);
    assert.equal((await d.run(['run', '--rm', 'hb-cli'])).stdout, 'via hyperbox\n');
    const shown = async (args: string[]) => (await d.run(['images', '-q', ...args])).stdout.trim().split('\n').length;
    assert.ok((await shown(['-a'])) > (await shown([])), 'hyperbox images -a lists the step images too');
    assert.match((await d.run(['build', dir])).stdout, /Using cache/);
    assert.doesNotMatch((await d.run(['build', '--no-cache', dir])).stdout, /Using cache/);
  });

  it('never reads host files: escaping entries are refused, symlinks resolve inside the context', async () => {
    const escaping = await dockerodeBuild(Readable.from([await tarBuffer([{ name: 'Dockerfile', body: 'FROM busybox\n' }, { name: '../../outside', body: 'x' }])]), {});
    assert.match(escaping.error ?? '', /build context.*escapes the root/);

    for (const [i, entries, step] of [
      [0, [{ name: 'passwd', type: 'symlink', linkname: '/etc/passwd' }], 'COPY passwd /x'],
      [1, [{ name: 'hostetc', type: 'symlink', linkname: '/etc' }], 'COPY hostetc/hostname /x'],
      [2, [{ name: 'up', type: 'symlink', linkname: '../../../../../../../../etc' }], 'COPY up/hostname /x'],
      [3, [], 'COPY ../../../../etc/hostname /x'],
    ] as const) {
      const body = await tarBuffer([{ name: 'Dockerfile', body: `FROM busybox\n${step}\n` }, ...entries]);
      const r = await dockerodeBuild(Readable.from([body]), {});
      assert.match(r.error ?? '', /line 2: COPY: .*(file not found|forbidden path outside the build context)/, `case ${i}: ${r.text}`);
    }
    // Copying a directory copies a symlink in it as a link, never what it points to.
    const body = await tarBuffer([
      { name: 'Dockerfile', body: 'FROM busybox\nCOPY d /d\nCOPY dockerfile-link /df\n' },
      { name: 'd/shadow', type: 'symlink', linkname: '/etc/shadow' },
      { name: 'dockerfile-link', type: 'symlink', linkname: '/Dockerfile' },
    ]);
    const ok = await dockerodeBuild(Readable.from([body]), { t: 'links' });
    assert.equal(ok.error, undefined, ok.text);
    const r = await plain(['run', '--rm', 'links', 'sh', '-c', 'readlink /d/shadow; head -1 /df']);
    assert.equal(r.stdout, '/etc/shadow\nFROM busybox\n', 'the link stays a link; /Dockerfile is the context\'s');
    assert.deepEqual(fs.readdirSync(path.join(d.dataRoot, 'data', 'build', 'tmp')), [], 'every unpacked context, refused or built, is removed');
  });

  it('pulls a private base image with the credentials the docker CLI sends (X-Registry-Config)', async () => {
    const reg = new TestRegistry({ kind: 'basic', user: 'builder', password: 's3cret' });
    await reg.start();
    try {
      const base = `${reg.host}/private/bb:1`;
      const login = await dockerCli(d, ['login', '-u', 'builder', '--password-stdin', reg.host], { input: 's3cret\n' });
      assert.equal(login.code, 0, login.stderr);
      assert.equal((await plain(['tag', 'busybox', base])).code, 0);
      const push = await plain(['push', base]);
      assert.equal(push.code, 0, push.stderr);
      await plain(['rmi', base]);
      const dir = context('private', { Dockerfile: `FROM ${base}\nCMD ["true"]\n` });
      const anonymous = await dockerodeBuild(Readable.from([await tarBuffer([{ name: 'Dockerfile', body: `FROM ${base}\n` }])]), {});
      assert.match(anonymous.error ?? '', /line 1: FROM: .*(unauthorized|authentication|401)/i, 'no credentials, no pull');
      const r = await classic(['build', '-t', 'from-private', dir]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, new RegExp(`Pulling ${base}`));
      // `hyperbox build` sends what `hyperbox login` stored, and shows the pull as `pull` does.
      await plain(['rmi', 'from-private', base]);
      const env = { XDG_CONFIG_HOME: path.join(work, 'xdg') };
      assert.equal((await d.run(['login', '-u', 'builder', '--password-stdin', reg.host], { input: 's3cret\n', env })).code, 0);
      const hb = await d.run(['build', '-t', 'from-private', dir], { env, timeoutMs: 120_000 });
      assert.equal(hb.code, 0, hb.stderr);
      assert.match(hb.stdout, /^[0-9a-f]{12}: (Already exists|Pull complete)$/m);
    } finally {
      await reg.stop();
    }
  });

  it('a client that goes away stops the build: its RUN step is killed and removed', async () => {
    const dir = context('abort', { Dockerfile: 'FROM busybox\nRUN sleep 120\nRUN echo never-ran > /f\n' });
    const child = spawn('docker', ['build', dir], { env: { ...dockerEnv(d), DOCKER_BUILDKIT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => ((out += c), out.includes('Running in') && resolve())));
    const t0 = Date.now();
    child.kill('SIGKILL');
    // Before the step's 120 s were up: the step was killed and its container removed
    // (seconds here; the deadline leaves a 3x slower machine room and stays well short of 120 s).
    await until('the aborted build to remove its step container', async () => (await plain(['ps', '-a', '-q'])).stdout.trim() === '', 90_000);
    assert.ok(Date.now() - t0 < 90_000);
  });

  it('build prune clears the cache and the step images (image prune keeps them, as Docker)', async () => {
    const dir = context('prune', { Dockerfile: 'FROM busybox\nCOPY f /f\nCMD ["cat", "/f"]\n', f: 'pruned\n' });
    assert.equal((await classic(['build', '-t', 'prune-me', dir])).code, 0);
    assert.equal((await plain(['image', 'prune', '-f'])).code, 0);
    assert.match((await classic(['build', dir])).stdout, /Using cache/, 'image prune keeps the build cache');
    const before = (await plain(['images', '-a', '-q'])).stdout.trim().split('\n').length;
    const r = await plain(['builder', 'prune', '-f']);
    assert.equal(r.code, 0, r.stderr);
    const afterPrune = (await plain(['images', '-a', '-q'])).stdout.trim().split('\n').length;
    assert.ok(afterPrune < before, `${afterPrune} < ${before}`);
    assert.equal((await plain(['run', '--rm', 'prune-me'])).stdout, 'pruned\n', 'tagged images keep working');
    assert.doesNotMatch((await classic(['build', dir])).stdout, /Using cache/);
  });
});
