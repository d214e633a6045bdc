/** Container filesystem commands: cp, export, commit. */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { ApiError } from '../client.js';
import { type Act, api, apiClient, collect, stream } from '../context.js';
import { ExitError } from '../exit-error.js';

interface PathStat {
  name: string;
  mode: number;
  linkTarget: string;
}
const GO_MODE_DIR = 2 ** 31;

/** "container:/path" (a container path) or a host path. */
function splitTarget(arg: string): { container?: string; path: string } {
  const m = /^([a-zA-Z0-9][a-zA-Z0-9_.-]*):(.*)$/.exec(arg);
  return m && !arg.startsWith('/') && !arg.startsWith('.') ? { container: m[1]!, path: m[2] || '/' } : { path: arg };
}

async function statInContainer(container: string, p: string): Promise<PathStat | undefined> {
  const res = await apiClient().open('HEAD', `/containers/${container}/archive`, { query: { path: p } });
  res.resume();
  if (res.statusCode === 404) return undefined;
  if ((res.statusCode ?? 500) >= 400) throw new ApiError(res.statusCode ?? 500, `cannot stat ${container}:${p}: HTTP ${res.statusCode}`);
  return JSON.parse(Buffer.from(String(res.headers['x-docker-container-path-stat'] ?? ''), 'base64').toString('utf8')) as PathStat;
}

async function copyOut(container: string, src: string, dest: string, follow: boolean): Promise<void> {
  let p = src;
  if (follow) {
    const st = await statInContainer(container, src);
    if (st?.linkTarget) p = st.linkTarget.startsWith('/') ? st.linkTarget : path.posix.join(path.posix.dirname(src), st.linkTarget);
  }
  const res = await stream('GET', `/containers/${container}/archive`, { query: { path: p } });
  if (dest === '-') {
    await pipeline(res, process.stdout);
    return;
  }
  // Loaded on use: tar and decompression code would slow every other command's start.
  const { applyLayer } = await import('../../images/layer.js');
  const destIsDir = fs.existsSync(dest) && fs.statSync(dest).isDirectory();
  if (destIsDir) return applyLayer(dest, res, { whiteouts: false });
  // A new name: unpack next to it, then rename the archive's top entry.
  const parent = path.dirname(path.resolve(dest));
  if (!fs.existsSync(parent)) throw new ExitError(1, `destination directory ${parent} does not exist`);
  const tmp = fs.mkdtempSync(path.join(parent, '.hyperbox-cp-'));
  try {
    await applyLayer(tmp, res, { whiteouts: false });
    const [top] = fs.readdirSync(tmp);
    if (top === undefined) throw new ExitError(1, 'empty archive');
    fs.renameSync(path.join(tmp, top), dest);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function copyIn(src: string, container: string, dest: string, archive: boolean): Promise<void> {
  let body: Readable;
  let dir = dest;
  if (src === '-') body = process.stdin;
  else {
    if (!fs.existsSync(src)) throw new ExitError(1, `could not find the file ${src} on the host`);
    const st = await statInContainer(container, dest);
    const intoDir = !!st && (st.mode & GO_MODE_DIR) !== 0;
    if (!intoDir) {
      if (dest.endsWith('/')) throw new ExitError(1, `destination directory ${dest} does not exist in the container`);
      dir = path.posix.dirname(dest);
    }
    const { packTree } = await import('../../images/archive/tree.js');
    body = packTree(src, { topName: intoDir ? path.basename(path.resolve(src)) : path.posix.basename(dest) });
  }
  await api('PUT', `/containers/${container}/archive`, {
    query: { path: dir, noOverwriteDirNonDir: true, copyUIDGID: archive },
    stream: body,
    headers: { 'Content-Type': 'application/x-tar' },
  });
}

export function registerFileCommands(program: Command, act: Act): void {
  program
    .command('cp')
    .description('copy files/folders between a container and the local filesystem')
    .option('-a, --archive', 'archive mode (copy all uid/gid information)')
    .option('-L, --follow-link', 'always follow symbol link in SRC_PATH')
    .argument('<src>', 'CONTAINER:SRC_PATH or a host path (- for a tar on stdin)')
    .argument('<dest>', 'CONTAINER:DEST_PATH or a host path (- for a tar on stdout)')
    .action(
      act(async (srcArg: string, destArg: string, o: { archive?: boolean; followLink?: boolean }) => {
        const src = splitTarget(srcArg);
        const dest = splitTarget(destArg);
        if (src.container && dest.container) throw new ExitError(1, 'copying between containers is not supported');
        if (!src.container && !dest.container) throw new ExitError(1, 'must specify at least one container source');
        if (src.container) await copyOut(src.container, src.path, dest.path, !!o.followLink);
        else await copyIn(src.path, dest.container!, dest.path, !!o.archive);
        return 0;
      }),
    );

  program
    .command('export')
    .description("export a container's filesystem as a tar archive")
    .option('-o, --output <file>', 'write to a file, instead of STDOUT')
    .argument('<container>')
    .action(
      act(async (container: string, o: { output?: string }) => {
        if (!o.output && process.stdout.isTTY) throw new ExitError(1, 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
        const res = await stream('GET', `/containers/${container}/export`);
        await pipeline(res, o.output ? fs.createWriteStream(o.output) : process.stdout);
        return 0;
      }),
    );

  program
    .command('commit')
    .description("create a new image from a container's changes")
    .option('-a, --author <author>', 'author')
    .option('-c, --change <instruction>', 'apply Dockerfile instruction to the created image', collect)
    .option('-m, --message <message>', 'commit message')
    .option('-p, --pause [bool]', 'pause container during commit', (v) => v !== 'false', true)
    .argument('<container>')
    .argument('[repository[:tag]]')
    .action(
      act(async (container: string, ref: string | undefined, o: { author?: string; change?: string[]; message?: string; pause: boolean }) => {
        let repo = ref;
        let tag: string | undefined;
        if (ref) {
          const i = ref.lastIndexOf(':');
          if (i > ref.lastIndexOf('/')) [repo, tag] = [ref.slice(0, i), ref.slice(i + 1)];
        }
        const r = await api<{ Id: string }>('POST', '/commit', {
          query: { container, repo, tag, comment: o.message, author: o.author, changes: o.change ?? [], pause: o.pause ? undefined : '0' },
        });
        process.stdout.write(`${r.Id}\n`);
        return 0;
      }),
    );
}
