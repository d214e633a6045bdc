/** Image commands: images, import, tag, rmi. */
import fs from 'node:fs';
import type { Command } from 'commander';
import { type Act, ago, api, collect, humanSize } from '../context.js';
import { renderTemplate, table } from '../format.js';

export function registerImageCommands(program: Command, act: Act): void {
  program
    .command('images')
    .description('list images')
    .option('-q, --quiet', 'only show image IDs')
    .option('--format <template>', 'format output using a Go-style template')
    .action(
      act(async (o: { quiet?: boolean; format?: string }) => {
        const list = await api<Array<{ Id: string; RepoTags: string[]; Created: number; Size: number }>>('GET', '/images/json');
        const rows = list.flatMap((img) =>
          (img.RepoTags.length ? img.RepoTags : ['<none>:<none>']).map((t) => {
            const i = t.lastIndexOf(':');
            return { Repository: t.slice(0, i), Tag: t.slice(i + 1), ID: img.Id.slice(7, 19), CreatedSince: ago(img.Created), Size: humanSize(img.Size) };
          }),
        );
        if (o.quiet) process.stdout.write([...new Set(rows.map((r) => r.ID))].map((x) => `${x}\n`).join(''));
        else if (o.format) for (const r of rows) process.stdout.write(renderTemplate(o.format, r) + '\n');
        else process.stdout.write(table([['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], ...rows.map((r) => [r.Repository, r.Tag, r.ID, r.CreatedSince, r.Size])]) + '\n');
        return 0;
      }),
    );

  program
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

  program
    .command('tag')
    .description('create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>')
    .argument('<target>')
    .action(
      act(async (src: string, target: string) => {
        const i = target.lastIndexOf(':');
        const hasTag = i > target.lastIndexOf('/');
        await api('POST', `/images/${src}/tag`, { query: { repo: hasTag ? target.slice(0, i) : target, tag: hasTag ? target.slice(i + 1) : 'latest' } });
        return 0;
      }),
    );

  program
    .command('rmi')
    .description('remove one or more images')
    .option('-f, --force', 'force removal of the image')
    .argument('<image...>')
    .action(
      act(async (images: string[], o: { force?: boolean }) => {
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
      }),
    );
}
