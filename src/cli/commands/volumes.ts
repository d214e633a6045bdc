/** `volume create/ls/inspect/rm/prune`: named volumes. */
import type { Command } from 'commander';
import { type Act, api, collect, forEach, parseLabels } from '../context.js';
import { renderTemplate, table } from '../format.js';

interface Volume {
  Name: string;
  Driver: string;
  Mountpoint: string;
  Labels: Record<string, string>;
}

export function registerVolumeCommands(program: Command, act: Act): void {
  const volume = program.command('volume').description('manage volumes');
  volume
    .command('create')
    .description('create a volume')
    .argument('[name]')
    .option('-d, --driver <driver>', 'volume driver', 'local')
    .option('--label <key=value>', 'set metadata for a volume', collect)
    .action(
      act(async (name: string | undefined, o: { driver: string; label?: string[] }) => {
        const labels = parseLabels(o.label);
        const v = await api<Volume>('POST', '/volumes/create', { body: { Name: name ?? '', Driver: o.driver, Labels: labels } });
        process.stdout.write(`${v.Name}\n`);
        return 0;
      }),
    );
  volume
    .command('ls')
    .alias('list')
    .description('list volumes')
    .option('-q, --quiet', 'only display volume names')
    .option('--format <template>', 'format output using a Go-style template')
    .action(
      act(async (o: { quiet?: boolean; format?: string }) => {
        const { Volumes } = await api<{ Volumes: Volume[] }>('GET', '/volumes');
        if (o.quiet) process.stdout.write(Volumes.map((v) => `${v.Name}\n`).join(''));
        else if (o.format) for (const v of Volumes) process.stdout.write(renderTemplate(o.format, v) + '\n');
        else process.stdout.write(table([['DRIVER', 'VOLUME NAME'], ...Volumes.map((v) => [v.Driver, v.Name])]) + '\n');
        return 0;
      }),
    );
  volume
    .command('inspect')
    .description('display detailed information on volumes')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .argument('<volume...>')
    .action(
      act(async (names: string[], o: { format?: string }) => {
        const out: unknown[] = [];
        for (const n of names) out.push(await api('GET', `/volumes/${encodeURIComponent(n)}`));
        if (o.format) for (const x of out) process.stdout.write(renderTemplate(o.format, x) + '\n');
        else process.stdout.write(JSON.stringify(out, null, 4) + '\n');
        return 0;
      }),
    );
  volume
    .command('rm')
    .alias('remove')
    .description('remove volumes (a volume in use by a container cannot be removed)')
    .option('-f, --force', 'do not fail for volumes that do not exist')
    .argument('<volume...>')
    .action(act(async (names: string[], o: { force?: boolean }) => forEach(names, async (n) => void (await api('DELETE', `/volumes/${encodeURIComponent(n)}`, { query: { force: !!o.force } })))));
  volume
    .command('prune')
    .description('remove unused anonymous volumes (all unused volumes with -a)')
    .option('-a, --all', 'remove all unused volumes, not just anonymous ones')
    .option('-f, --force', 'do not prompt for confirmation')
    .action(
      act(async (o: { all?: boolean }) => {
        const r = await api<{ VolumesDeleted: string[] | null; SpaceReclaimed: number }>('POST', '/volumes/prune', { query: { filters: JSON.stringify(o.all ? { all: ['true'] } : {}) } });
        const deleted = r.VolumesDeleted ?? [];
        if (deleted.length) process.stdout.write(`Deleted Volumes:\n${deleted.map((n) => `${n}\n`).join('')}\n`);
        process.stdout.write(`Total reclaimed space: ${r.SpaceReclaimed}B\n`);
        return 0;
      }),
    );
}
