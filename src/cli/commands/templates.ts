/** `template ls/create/rm`: the VM templates that instant clones start from. */
import type { Command } from 'commander';
import { type Act, ago, api, forEach } from '../context.js';
import { table } from '../format.js';
import { parseBytes, parseCpus } from '../units.js';

export function registerTemplateCommands(program: Command, act: Act): void {
  const template = program.command('template').description('manage VM templates (instant clone parents)');
  template
    .command('ls')
    .description('list templates')
    .option('-q, --quiet', 'only show keys')
    .action(
      act(async (o: { quiet?: boolean }) => {
        const list = await api<Array<{ key: string; memoryMiB: number; cpus: number; accel: string; created: string; bootMs: number }>>('GET', '/hyperbox/templates');
        if (o.quiet) process.stdout.write(list.map((t) => `${t.key}\n`).join(''));
        else process.stdout.write(table([['TEMPLATE', 'MEMORY', 'CPUS', 'ACCEL', 'CREATED', 'BOOT'], ...list.map((t) => [t.key, `${t.memoryMiB}MiB`, String(t.cpus), t.accel, ago(Date.parse(t.created) / 1000), `${t.bootMs}ms`])]) + '\n');
        return 0;
      }),
    );
  template
    .command('create')
    .description('create the templates of a guest shape ahead of time (their keys, a line each)')
    .option('-m, --memory <bytes>', 'guest memory')
    .option('--cpus <n>', 'vCPUs')
    .action(
      act(async (o: { memory?: string; cpus?: string }) => {
        const body = { MemoryMiB: o.memory ? Math.round(parseBytes(o.memory, '-m, --memory') / 1048576) : undefined, Cpus: o.cpus ? Math.round(parseCpus(o.cpus) / 1e9) : undefined };
        const r = await api<{ Key: string; Keys?: string[] }>('POST', '/hyperbox/templates', { body });
        process.stdout.write((r.Keys ?? [r.Key]).map((k) => `${k}\n`).join(''));
        return 0;
      }),
    );
  template
    .command('rm')
    .description('remove templates')
    .argument('<key...>')
    .action(act(async (keys: string[]) => forEach(keys, async (k) => void (await api('DELETE', `/hyperbox/templates/${k}`)))));
}
