/** Commands that look into or manage a container's state: pause, unpause, rename, top, stats, diff, container prune. */
import type { Command } from 'commander';
import { type Act, api, forEach, humanSize, stream } from '../context.js';
import { renderTemplate, table } from '../format.js';

interface StatsJson {
  name: string;
  id: string;
  pids_stats: { current?: number };
  cpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage: number; online_cpus: number };
  precpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage: number };
  memory_stats: { usage?: number; limit?: number };
  blkio_stats: { io_service_bytes_recursive: Array<{ op: string; value: number }> | null };
}

function binary(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${i ? n.toFixed(2) : n}${units[i]}`;
}

/** The columns `docker stats` shows, computed as the docker CLI does. */
function statsRow(s: StatsJson) {
  const cpuDelta = s.cpu_stats.cpu_usage.total_usage - s.precpu_stats.cpu_usage.total_usage;
  const sysDelta = s.cpu_stats.system_cpu_usage - s.precpu_stats.system_cpu_usage;
  const cpu = sysDelta > 0 && cpuDelta > 0 ? (cpuDelta / sysDelta) * s.cpu_stats.online_cpus * 100 : 0;
  const used = s.memory_stats.usage ?? 0;
  const limit = s.memory_stats.limit ?? 0;
  const io = s.blkio_stats.io_service_bytes_recursive ?? [];
  const sum = (op: string) => io.filter((x) => x.op.toLowerCase() === op).reduce((n, x) => n + x.value, 0);
  return {
    Container: s.id.slice(0, 12),
    ID: s.id.slice(0, 12),
    Name: s.name.replace(/^\//, ''),
    CPUPerc: `${cpu.toFixed(2)}%`,
    MemUsage: `${binary(used)} / ${binary(limit)}`,
    MemPerc: `${limit ? ((used / limit) * 100).toFixed(2) : '0.00'}%`,
    BlockIO: `${humanSize(sum('read'))} / ${humanSize(sum('write'))}`,
    PIDs: String(s.pids_stats.current ?? 0),
  };
}

async function stats(containers: string[], o: { stream?: boolean; format?: string }): Promise<number> {
  const names = containers.length ? containers : (await api<Array<{ Id: string }>>('GET', '/containers/json')).map((c) => c.Id);
  const render = (rows: ReturnType<typeof statsRow>[]) =>
    o.format
      ? rows.map((r) => renderTemplate(o.format!, r)).join('\n') + '\n'
      : table([['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'BLOCK I/O', 'PIDS'], ...rows.map((r) => [r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.BlockIO, r.PIDs])]) + '\n';
  if (o.stream === false) {
    const rows = await Promise.all(names.map(async (n) => statsRow(await api<StatsJson>('GET', `/containers/${n}/stats`, { query: { stream: '0' } }))));
    process.stdout.write(render(rows));
    return 0;
  }
  const latest = new Map<string, ReturnType<typeof statsRow>>();
  await Promise.all(
    names.map(async (n) => {
      const res = await stream('GET', `/containers/${n}/stats`, { query: { stream: true } });
      let buf = '';
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buf += chunk.toString('utf8');
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          latest.set(n, statsRow(JSON.parse(line) as StatsJson));
          if (process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
          process.stdout.write(render([...latest.values()]));
        }
      }
    }),
  );
  return 0;
}

export function registerContainerStateCommands(program: Command, act: Act): void {
  program
    .command('pause')
    .description('pause all processes within one or more containers (the VM is stopped)')
    .argument('<container...>')
    .action(act(async (ids: string[]) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/pause`)))));
  program
    .command('unpause')
    .description('unpause all processes within one or more containers')
    .argument('<container...>')
    .action(act(async (ids: string[]) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/unpause`)))));
  program
    .command('rename')
    .description('rename a container')
    .argument('<container>')
    .argument('<new-name>')
    .action(
      act(async (id: string, name: string) => {
        await api('POST', `/containers/${id}/rename`, { query: { name } });
        return 0;
      }),
    );
  program
    .command('top')
    .description('display the running processes of a container')
    .argument('<container>')
    .action(
      act(async (id: string) => {
        const r = await api<{ Titles: string[]; Processes: string[][] }>('GET', `/containers/${id}/top`);
        process.stdout.write(table([r.Titles, ...r.Processes]) + '\n');
        return 0;
      }),
    );
  program
    .command('diff')
    .description("inspect changes to files or directories on a container's filesystem")
    .argument('<container>')
    .action(
      act(async (id: string) => {
        const changes = (await api<Array<{ Path: string; Kind: number }> | null>('GET', `/containers/${id}/changes`)) ?? [];
        for (const c of changes) process.stdout.write(`${'CAD'[c.Kind]} ${c.Path}\n`);
        return 0;
      }),
    );
  program
    .command('stats')
    .description('display a live stream of container resource usage statistics')
    .option('--no-stream', 'disable streaming stats and only pull the first result')
    .option('--format <template>', 'format output using a Go-style template')
    .argument('[container...]')
    .action(act(stats));

  const container = program.commands.find((c) => c.name() === 'container') ?? program.command('container').description('manage containers');
  container
    .command('prune')
    .description('remove all stopped containers')
    .option('-f, --force', 'do not prompt for confirmation (hyperbox never prompts)')
    .action(
      act(async () => {
        const r = await api<{ ContainersDeleted: string[] | null }>('POST', '/containers/prune');
        const ids = r.ContainersDeleted ?? [];
        if (ids.length) process.stdout.write(`Deleted Containers:\n${ids.join('\n')}\n\n`);
        process.stdout.write('Total reclaimed space: 0B\n');
        return 0;
      }),
    );
}
