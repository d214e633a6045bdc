/** The build context (unpacking, .dockerignore, confined paths), COPY layers and cache keys. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { after, describe, it } from 'node:test';
import tar from 'tar-stream';
import { stepKey } from '../../src/build/cache.js';
import { BuildContext, cleanSource, resolveConfined } from '../../src/build/context.js';
import { writeCopyLayer } from '../../src/build/copy-layer.js';
import { planCopy } from '../../src/build/copy-step.js';
import { envMap } from '../../src/build/shell-words.js';
import { DockerIgnore } from '../../src/build/dockerignore.js';
import { parseRegistryConfig } from '../../src/build/options.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-build-unit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function tarOf(entries: Array<Partial<tar.Header> & { name: string; body?: string }>): Promise<Readable> {
  const pack = tar.pack();
  for (const e of entries) {
    const { body, ...h } = e;
    pack.entry({ mode: 0o644, ...h }, body ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Readable.from([Buffer.concat(chunks)]);
}

async function layerNames(file: string): Promise<Array<[string, string | undefined, number | undefined]>> {
  const out: Array<[string, string | undefined, number | undefined]> = [];
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      out.push([e.header.name, e.header.type, e.header.uid]);
      e.resume();
    }
  })();
  fs.createReadStream(file).pipe(ex);
  await done;
  return out;
}

describe('.dockerignore', () => {
  it('matches like Docker: directories cover their contents, ** spans directories, ! re-includes, last match wins', () => {
    const ig = new DockerIgnore('# comment\nnode_modules\n**/*.log\n!keep.log\n/tmp/*\n*.md\n!README.md\n');
    assert.equal(ig.ignores('node_modules/x/y.js'), true);
    assert.equal(ig.ignores('a/b/c.log'), true);
    assert.equal(ig.ignores('c.log'), true);
    assert.equal(ig.ignores('keep.log'), false);
    assert.equal(ig.ignores('tmp/x'), true);
    assert.equal(ig.ignores('tmp'), false);
    assert.equal(ig.ignores('docs/a.md'), false); // * does not cross /
    assert.equal(ig.ignores('CHANGES.md'), true);
    assert.equal(ig.ignores('README.md'), false);
    assert.equal(ig.ignores('src/main.ts'), false);
  });
});

describe('build context', () => {
  it('unpacks a context, applies .dockerignore (with exceptions) and keeps the Dockerfile readable', async () => {
    const ctx = await BuildContext.unpack(
      await tarOf([
        { name: 'Dockerfile', body: 'FROM scratch\n' },
        { name: '.dockerignore', body: 'secret\nlogs\n!logs/keep\nDockerfile\n' },
        { name: 'secret', body: 's' },
        { name: 'logs/a', body: 'a' },
        { name: 'logs/keep', body: 'k' },
        { name: 'app.js', body: 'x' },
      ]),
      tmp,
    );
    try {
      assert.equal(ctx.readDockerfile('Dockerfile'), 'FROM scratch\n');
      ctx.applyDockerignore();
      assert.equal(ctx.resolve('secret'), undefined);
      assert.equal(ctx.resolve('logs/a'), undefined);
      assert.ok(ctx.resolve('logs/keep'));
      assert.ok(ctx.resolve('app.js'));
    } finally {
      ctx.dispose();
    }
  });

  it("reads a context that ends right after its last file's data (the docker CLI's `build -f -`)", async () => {
    const whole = Buffer.concat(await (await tarOf([{ name: 'Dockerfile', body: 'FROM x\n' }])).toArray());
    const ctx = await BuildContext.unpack(Readable.from([whole.subarray(0, 512 + 7)]), tmp);
    try {
      assert.equal(ctx.readDockerfile('Dockerfile'), 'FROM x\n');
    } finally {
      ctx.dispose();
    }
  });

  it('refuses a context whose entries escape, and never resolves a symlink outside it', async () => {
    await assert.rejects(BuildContext.unpack(await tarOf([{ name: '../../escape', body: 'x' }]), tmp), /escapes the root/);
    await assert.rejects(BuildContext.unpack(await tarOf([{ name: 'big', body: 'x'.repeat(4096) }]), tmp, 1024), /exceeds the 1024-byte size limit/);
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith('hyperbox-build-')), [], 'a refused context leaves nothing behind');
    const ctx = await BuildContext.unpack(
      await tarOf([
        { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'up', type: 'symlink', linkname: '../../../../../../etc' },
        { name: 'etcdir', type: 'symlink', linkname: '/etc' },
        { name: 'inside', type: 'symlink', linkname: 'real' },
        { name: 'real', body: 'ok' },
      ]),
      tmp,
    );
    try {
      // As if the context were "/": /etc/passwd of the context, which does not exist.
      assert.equal(ctx.resolve('abs'), undefined);
      assert.equal(ctx.resolve('up/passwd'), undefined);
      assert.equal(ctx.resolve('etcdir/passwd'), undefined);
      assert.equal(ctx.resolve('../../etc/passwd'), undefined);
      assert.equal(fs.readFileSync(ctx.resolve('inside')!, 'utf8'), 'ok');
      assert.throws(() => ctx.readDockerfile('abs'), /Cannot locate specified Dockerfile: abs/);
      assert.throws(() => cleanSource('../x'), /forbidden path outside the build context/);
      assert.equal(cleanSource('a/../b/./c'), 'b/c');
    } finally {
      ctx.dispose();
    }
    assert.equal(resolveConfined('/', 'etc/passwd'), '/etc/passwd');
  });
});

describe('COPY layers and cache keys', () => {
  it('packs a directory\'s contents under the destination, owned by root or --chown, links kept as links', async () => {
    const src = fs.mkdtempSync(path.join(tmp, 'src-'));
    fs.mkdirSync(path.join(src, 'd'));
    fs.writeFileSync(path.join(src, 'd', 'f'), 'data');
    fs.symlinkSync('/etc/shadow', path.join(src, 'd', 'l'));
    const file = path.join(tmp, 'layer.tar');
    const sig1 = await writeCopyLayer({ sources: [{ hostPath: path.join(src, 'd'), name: 'd' }], dest: '/app', destIsDir: true, destExists: false, extractArchives: false }, file);
    assert.deepEqual(await layerNames(file), [
      ['app', 'directory', 0],
      ['app/f', 'file', 0],
      ['app/l', 'symlink', 0],
    ]);
    const sig2 = await writeCopyLayer(
      { sources: [{ hostPath: path.join(src, 'd'), name: 'd' }], dest: '/app', destIsDir: true, destExists: false, owner: { uid: 7, gid: 8 }, extractArchives: false },
      file,
    );
    assert.notEqual(sig1, sig2, 'the owner is part of the signature');
    fs.utimesSync(path.join(src, 'd', 'f'), new Date(0), new Date(0));
    const sig3 = await writeCopyLayer({ sources: [{ hostPath: path.join(src, 'd'), name: 'd' }], dest: '/app', destIsDir: true, destExists: false, extractArchives: false }, file);
    assert.equal(sig1, sig3, 'mtimes are not');
    fs.writeFileSync(path.join(src, 'd', 'f'), 'datA');
    const sig4 = await writeCopyLayer({ sources: [{ hostPath: path.join(src, 'd'), name: 'd' }], dest: '/app', destIsDir: true, destExists: false, extractArchives: false }, file);
    assert.notEqual(sig1, sig4, 'content is');
  });

  it('ADD unpacks a local tar archive into the destination, refusing escaping names', async () => {
    const archive = path.join(tmp, 'a.tar');
    const t = await tarOf([{ name: 'x/y', body: 'yy' }]);
    fs.writeFileSync(archive, Buffer.concat(await t.toArray()));
    const file = path.join(tmp, 'layer2.tar');
    await writeCopyLayer({ sources: [{ hostPath: archive, name: 'a.tar' }], dest: '/opt', destIsDir: true, destExists: true, extractArchives: true }, file);
    assert.deepEqual((await layerNames(file)).map((e) => e[0]), ['opt/x/y']);
    // gzip'd: unpacked too; a gzip'd file that is not a tar is copied as it is.
    const tgz = path.join(tmp, 'a.tgz');
    fs.writeFileSync(tgz, zlib.gzipSync(fs.readFileSync(archive)));
    await writeCopyLayer({ sources: [{ hostPath: tgz, name: 'a.tgz' }], dest: '/opt', destIsDir: true, destExists: true, extractArchives: true }, file);
    assert.deepEqual((await layerNames(file)).map((e) => e[0]), ['opt/x/y']);
    const gz = path.join(tmp, 'notes.gz');
    fs.writeFileSync(gz, zlib.gzipSync('just text'));
    await writeCopyLayer({ sources: [{ hostPath: gz, name: 'notes.gz' }], dest: '/opt', destIsDir: true, destExists: true, extractArchives: true }, file);
    assert.deepEqual((await layerNames(file)).map((e) => e[0]), ['opt/notes.gz']);
    const bad = path.join(tmp, 'bad.tar');
    fs.writeFileSync(bad, Buffer.concat(await (await tarOf([{ name: '../../evil', body: 'e' }])).toArray()));
    await assert.rejects(writeCopyLayer({ sources: [{ hostPath: bad, name: 'bad.tar' }], dest: '/opt', destIsDir: true, destExists: true, extractArchives: true }, file), /escapes/);
  });

  it('keys a step on its parent, instruction, build args (any order) and content', () => {
    const base = { parent: 'sha256:a', instruction: 'RUN x' };
    assert.equal(stepKey({ ...base, args: ['A=1', 'B=2'] }), stepKey({ ...base, args: ['B=2', 'A=1'] }));
    assert.notEqual(stepKey(base), stepKey({ ...base, parent: 'sha256:b' }));
    assert.notEqual(stepKey(base), stepKey({ ...base, instruction: 'RUN y' }));
    assert.notEqual(stepKey(base), stepKey({ ...base, args: ['A=1'] }));
    assert.notEqual(stepKey(base), stepKey({ ...base, content: 'c' }));
  });
});

describe('X-Registry-Config', () => {
  it('reads the credentials a build may pull base images with, by registry host', () => {
    const header = Buffer.from(
      JSON.stringify({
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
        'localhost:5000': { username: 'u', password: 'p' },
        'empty.example': {},
      }),
    ).toString('base64url');
    const creds = parseRegistryConfig(header);
    assert.deepEqual(Object.keys(creds).sort(), ['docker.io', 'localhost:5000']);
    assert.equal(creds['docker.io']!.username, 'hub');
    assert.equal(creds['docker.io']!.password, 'pw');
    assert.equal(creds['localhost:5000']!.password, 'p');
    assert.deepEqual(parseRegistryConfig('not base64 json'), {});
  });
});

describe('COPY/ADD plans', () => {
  const ins = (args: string, flags: Record<string, string> = {}, cmd = 'COPY') => ({ cmd, args, flags, line: 1, original: `${cmd} ${args}` });

  function fixture(): { ctx: string; image: string } {
    const base = fs.mkdtempSync(path.join(tmp, 'plan-'));
    const ctx = path.join(base, 'ctx');
    const image = path.join(base, 'image');
    for (const f of ['a.txt', 'b.txt', 'c.md', 'dir/inner.txt']) {
      fs.mkdirSync(path.dirname(path.join(ctx, f)), { recursive: true });
      fs.writeFileSync(path.join(ctx, f), f);
    }
    fs.mkdirSync(path.join(image, 'etc'), { recursive: true });
    fs.mkdirSync(path.join(image, 'srv/app'), { recursive: true });
    fs.writeFileSync(path.join(image, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n');
    fs.writeFileSync(path.join(image, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
    return { ctx, image };
  }

  async function plan(args: string, flags: Record<string, string> = {}, workdir = '/srv/app') {
    const { ctx, image } = fixture();
    const p = await planCopy({ ins: ins(args, flags), env: envMap(['DEST=/opt/']), escape: '\\', workdir, sourceRoot: ctx, parentRoot: async () => image, tmpDir: tmp });
    try {
      return { ...p, entries: await layerNames(p.layerFile) };
    } finally {
      fs.rmSync(p.layerFile, { force: true });
    }
  }

  it('expands wildcards inside one directory level and copies into an existing directory', async () => {
    const p = await plan('*.txt ./');
    assert.deepEqual(p.entries.map((e) => e[0]), ['srv/app/a.txt', 'srv/app/b.txt']);
    assert.match(p.createdBy, /COPY \*\.txt in \/srv\/app /);
    // As the classic builder: several matches need a destination ending in "/", "." is not enough.
    await assert.rejects(plan('*.txt .'), /must be a directory and end with a \//);
    assert.deepEqual((await plan('c.md .')).entries.map((e) => e[0]), ['srv/app/c.md']);
  });

  it('a file to a new path is that file; variables expand in the destination; --chown by name', async () => {
    assert.deepEqual((await plan('c.md renamed.md')).entries.map((e) => e[0]), ['srv/app/renamed.md']);
    assert.deepEqual((await plan('c.md $DEST')).entries.map((e) => e[0]), ['opt', 'opt/c.md']);
    const owned = await plan('dir /data/', { chown: 'app:staff' });
    assert.deepEqual(owned.entries, [['data', 'directory', 1001], ['data/inner.txt', 'file', 1001]]);
    assert.deepEqual((await plan('dir /data/', { chown: 'app' })).entries[1], ['data/inner.txt', 'file', 1001]);
  });

  it('refuses several sources into a non-directory, unknown users and BuildKit-only flags', async () => {
    await assert.rejects(plan('a.txt b.txt /one'), /destination must be a directory and end with a \//);
    await assert.rejects(plan('a.txt /x', { chown: 'nobody-here' }), /can't find uid for nobody-here/);
    await assert.rejects(plan('a.txt /x', { link: 'true' }), /COPY --link is not supported by the classic builder/);
    await assert.rejects(plan('*.none /x/'), /no source files were specified/);
    await assert.rejects(plan('a.txt'), /requires at least two arguments/);
  });
});
