/**
 * Image commands: images, import, tag, rmi, history, and the `image` group
 * (ls, inspect, rm, tag, prune, history, import), as the docker CLI has both.
 */
import fs from 'node:fs';
import { Command } from 'commander';
import { ApiError } from '../client.js';
import { type Act, ago, api, collect, humanSize, truncate } from '../context.js';
import { renderTemplate, table } from '../format.js';

interface ImageSummary {
  Id: string;
  RepoTags: string[];
  RepoDigests?: string[];
  Created: number;
  Size: number;
}

async function listImages(o: { quiet?: boolean; format?: string; digests?: boolean; trunc?: boolean; all?: boolean }): Promise<number> {
  const list = await api<ImageSummary[]>('GET', '/images/json', { query: { all: o.all } });
  const rows = list.flatMap((img) =>
    (img.RepoTags.length ? img.RepoTags : ['<none>:<none>']).map((t) => {
      const i = t.lastIndexOf(':');
      const repo = t.slice(0, i);
      const digest = (img.RepoDigests ?? []).find((d) => d.startsWith(`${repo}@`))?.split('@')[1] ?? '<none>';
      return { Repository: repo, Tag: t.slice(i + 1), Digest: digest, ID: o.trunc === false ? img.Id : img.Id.slice(7, 19), CreatedSince: ago(img.Created), CreatedAt: new Date(img.Created * 1000).toISOString(), Size: humanSize(img.Size) };
    }),
  );
  if (o.quiet) process.stdout.write([...new Set(rows.map((r) => r.ID))].map((x) => `${x}\n`).join(''));
  else if (o.format) for (const r of rows) process.stdout.write(renderTemplate(o.format, r) + '\n');
  else {
    const header = ['REPOSITORY', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
    const cells = rows.map((r) => [r.Repository, r.Tag, ...(o.digests ? [r.Digest] : []), r.ID, r.CreatedSince, r.Size]);
    process.stdout.write(table([header, ...cells]) + '\n');
  }
  return 0;
}

async function tagImage(src: string, target: string): Promise<number> {
  const i = target.lastIndexOf(':');
  const hasTag = i > target.lastIndexOf('/');
  await api('POST', `/images/${src}/tag`, { query: { repo: hasTag ? target.slice(0, i) : target, tag: hasTag ? target.slice(i + 1) : 'latest' } });
  return 0;
}

async function removeImages(images: string[], o: { force?: boolean }): Promise<number> {
  let status = 0;
  for (const img of images) {
    try {
      const r = await api<Array<Record<string, string>>>('DELETE', `/images/${img}`, { query: { force: !!o.force } });
      for (const x of r) process.stdout.write(`${Object.keys(x)[0]}: ${Object.values(x)[0]}\n`);
    } catch (err) {
      process.stderr.write(`Error response from daemon: ${(err as Error).message}\n`);
      status = 1;
    }
  }
  return status;
}

async function history(image: string, o: { quiet?: boolean; format?: string; trunc?: boolean; human?: boolean }): Promise<number> {
  const rows = await api<Array<{ Id: string; Created: number; CreatedBy: string; Size: number; Comment: string }>>('GET', `/images/${image}/history`);
  const view = rows.map((h) => ({
    ID: h.Id === '<missing>' || o.trunc === false ? h.Id : h.Id.slice(7, 19),
    CreatedSince: ago(h.Created),
    CreatedAt: new Date(h.Created * 1000).toISOString(),
    CreatedBy: o.trunc === false ? h.CreatedBy : truncate(h.CreatedBy, 45),
    Size: o.human === false ? String(h.Size) : humanSize(h.Size),
    Comment: h.Comment,
  }));
  if (o.quiet) process.stdout.write(view.map((v) => `${v.ID}\n`).join(''));
  else if (o.format) for (const v of view) process.stdout.write(renderTemplate(o.format, v) + '\n');
  else process.stdout.write(table([['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], ...view.map((v) => [v.ID, v.CreatedSince, v.CreatedBy, v.Size, v.Comment])]) + '\n');
  return 0;
}

async function inspectImages(names: string[], o: { format?: string }): Promise<number> {
  let status = 0;
  const out: unknown[] = [];
  for (const n of names) {
    try {
      out.push(await api('GET', `/images/${n}/json`));
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      process.stderr.write(`Error response from daemon: ${err.message}\n`);
      status = 1;
    }
  }
  if (o.format) for (const x of out) process.stdout.write(renderTemplate(o.format, x) + '\n');
  else process.stdout.write(JSON.stringify(out, null, 4) + '\n');
  return status;
}

async function prune(o: { all?: boolean; force?: boolean }): Promise<number> {
  const r = await api<{ ImagesDeleted: Array<Record<string, string>> | null; SpaceReclaimed: number }>('POST', '/images/prune', {
    query: { filters: JSON.stringify({ dangling: [o.all ? 'false' : 'true'] }) },
  });
  const deleted = r.ImagesDeleted ?? [];
  if (deleted.length) {
    process.stdout.write('Deleted Images:\n');
    for (const x of deleted) process.stdout.write(`${Object.keys(x)[0]!.toLowerCase()}: ${Object.values(x)[0]}\n`);
    process.stdout.write('\n');
  }
  process.stdout.write(`Total reclaimed space: ${humanSize(r.SpaceReclaimed)}\n`);
  return 0;
}

const listOptions = (c: Command) =>
  c
    .option('-a, --all', 'show all images, a build\'s step images too')
    .option('-q, --quiet', 'only show image IDs')
    .option('--digests', 'show digests')
    .option('--no-trunc', "don't truncate output")
    .option('--format <template>', 'format output using a Go-style template');

function registerShared(parent: Command, act: Act, names: { tag: string; rm: string; history: string }): void {
  parent
    .command(names.tag)
    .description('create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>')
    .argument('<target>')
    .action(act(tagImage));

  parent
    .command(names.rm)
    .description('remove one or more images')
    .option('-f, --force', 'force removal of the image')
    .argument('<image...>')
    .action(act(removeImages));

  parent
    .command(names.history)
    .description('show the history of an image')
    .option('-q, --quiet', 'only show image IDs')
    .option('-H, --human [bool]', 'print sizes in human readable format', (v) => v !== 'false', true)
    .option('--no-trunc', "don't truncate output")
    .option('--format <template>', 'format output using a Go-style template')
    .argument('<image>')
    .action(act(history));

  parent
    .command('import')
    .description('import the contents from a tarball to create a filesystem image')
    .option('-c, --change <instruction>', 'apply Dockerfile instruction to the created image', collect)
    .option('-m, --message <message>', 'set commit message for imported image')
    .argument('<file>', 'tarball path, or - for stdin')
    .argument('[repository[:tag]]')
    .action(
      act(async (file: string, ref: string | undefined, o: { change?: string[]; message?: string }) => {
        const stream = file === '-' ? process.stdin : fs.createReadStream(file);
        let repo = ref;
        let tag: string | undefined;
        const m = ref ? /^(.*?)(?::([\w][\w.-]*))?$/.exec(ref) : null;
        if (m && !m[1]!.endsWith('/')) [repo, tag] = [m[1], m[2]];
        const r = await api<{ status: string }>('POST', '/images/create', {
          query: { fromSrc: '-', repo, tag, changes: o.change ?? [], message: o.message },
          stream,
          headers: { 'Content-Type': 'application/x-tar' },
        });
        process.stdout.write(`${r.status}\n`);
        return 0;
      }),
    );
}

export function registerImageCommands(program: Command, act: Act): void {
  listOptions(program.command('images').description('list images')).action(act(listImages));
  registerShared(program, act, { tag: 'tag', rm: 'rmi', history: 'history' });

  const image = program.command('image').description('manage images');
  listOptions(image.command('ls').alias('list').description('list images')).action(act(listImages));
  registerShared(image, act, { tag: 'tag', rm: 'rm', history: 'history' });
  image
    .command('inspect')
    .description('display detailed information on one or more images')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .argument('<image...>')
    .action(act(inspectImages));
  image
    .command('prune')
    .description('remove unused images')
    .option('-a, --all', 'remove all images not used by a container, not just dangling ones')
    .option('-f, --force', 'do not prompt for confirmation (hyperbox never prompts)')
    .action(act(prune));
}
