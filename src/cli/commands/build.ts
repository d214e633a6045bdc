/**
 * `hyperbox build`: packs the context directory (minus what `.dockerignore`
 * excludes, as the docker CLI does) and sends it to POST /build, rendering
 * the daemon's progress: each step's header, its output, whether it came
 * from the cache, and how long the whole build took.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { DockerIgnore } from '../../build/dockerignore.js';
import { registryConfigHeader } from '../auth-store.js';
import { packTree } from '../../images/archive/tree.js';
import { type Act, parseLabels, stream, collect } from '../context.js';
import { ExitError } from '../exit-error.js';
import { ProgressRenderer } from '../progress.js';
import { readJsonMessages } from './archive.js';

interface BuildFlags {
  tag: string[];
  file?: string;
  buildArg: string[];
  label: string[];
  target?: string;
  cache: boolean;
  pull?: boolean;
  quiet?: boolean;
  platform?: string;
}


/** --build-arg KEY=VALUE flags; a bare KEY takes its value from this environment (as docker's does). */
function buildArgs(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
    else if (process.env[kv] !== undefined) out[kv] = process.env[kv]!;
  }
  return out;
}

/** Renders the build's messages; on a terminal, step headers stand out and cached steps are dimmed. */
class BuildRenderer {
  constructor(private readonly tty = !!process.stdout.isTTY) {}

  handle(m: Record<string, unknown>): void {
    if (typeof m.stream !== 'string') return;
    let text = m.stream;
    if (this.tty) text = text.replace(/^(Step \d+\/\d+ : .*)$/m, '\x1b[1m$1\x1b[0m').replace(/^( ---> Using cache)$/m, '\x1b[2m$1\x1b[0m');
    process.stdout.write(text);
  }
}

async function build(context: string, o: BuildFlags): Promise<number> {
  const dir = path.resolve(context);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new ExitError(1, `unable to prepare context: path "${context}" not found`);
  const dockerfile = path.resolve(o.file ?? path.join(dir, 'Dockerfile'));
  const rel = path.relative(dir, dockerfile);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new ExitError(1, `the Dockerfile (${o.file}) must be inside the build context ${context}`);
  let ignore: DockerIgnore | undefined;
  try {
    ignore = new DockerIgnore(fs.readFileSync(path.join(dir, '.dockerignore'), 'utf8'));
  } catch {
    ignore = undefined;
  }
  const keep = new Set([rel, '.dockerignore']);
  const tar = packTree(dir, { transform: ({ name }) => (ignore && !keep.has(name) && ignore.ignores(name) && !ignore.hasExceptions ? null : undefined) });
  const started = Date.now();
  const res = await stream('POST', '/build', {
    stream: tar,
    headers: { 'Content-Type': 'application/x-tar', 'X-Registry-Config': registryConfigHeader() },
    query: {
      t: o.tag,
      dockerfile: rel.split(path.sep).join('/'),
      buildargs: JSON.stringify(buildArgs(o.buildArg)),
      labels: JSON.stringify(parseLabels(o.label)),
      target: o.target,
      nocache: !o.cache,
      pull: o.pull,
      q: o.quiet,
      platform: o.platform,
      rm: true,
    },
  });
  const renderer = new BuildRenderer();
  const pulls = new ProgressRenderer(); // a base image's download, shown as `pull` shows it
  let id = '';
  const error = await readJsonMessages(res, (m) => {
    const aux = m.aux as { ID?: string } | undefined;
    if (aux?.ID) id = aux.ID;
    if (o.quiet) return;
    if (typeof m.status === 'string') pulls.handle(m as { status: string; id?: string; progress?: string });
    else renderer.handle(m);
  });
  if (error) throw new ExitError(1, error);
  if (o.quiet) process.stdout.write(`${id}\n`);
  else process.stderr.write(`Built ${id.slice(7, 19)} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

export function registerBuildCommands(program: Command, act: Act): void {
  const image = program.commands.find((c) => c.name() === 'image');
  for (const parent of image ? [program, image] : [program]) {
    parent
      .command('build')
      .description('build an image from a Dockerfile (the classic builder: each RUN step in its own VM)')
      .option('-t, --tag <name:tag>', 'name and optionally a tag (repeatable)', collect, [])
      .option('-f, --file <path>', 'the Dockerfile (default: PATH/Dockerfile)')
      .option('--build-arg <key=value>', 'set a build-time variable (repeatable)', collect, [])
      .option('--label <key=value>', 'set metadata on the image (repeatable)', collect, [])
      .option('--target <stage>', 'build up to this stage')
      .option('--no-cache', 'do not use the cache')
      .option('--pull', 'always pull the base images')
      .option('--platform <os/arch>', 'the platform to build for (linux/amd64 only)')
      .option('-q, --quiet', 'print only the image ID')
      .argument('<path>', 'the build context directory')
      .action(act(build));
  }
}
