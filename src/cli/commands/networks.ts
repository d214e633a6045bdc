/** `network create/ls/inspect/rm/connect/disconnect/prune`: bridge networks. */
import type { Command } from 'commander';
import { type Act, api, collect, forEach, inspectEach, parseLabels } from '../context.js';
import { renderTemplate, table } from '../format.js';

interface Network {
  Id: string;
  Name: string;
  Driver: string;
  Scope: string;
}

export function registerNetworkCommands(program: Command, act: Act): void {
  const network = program.command('network').description('manage networks');
  network
    .command('create')
    .description('create a bridge network (as root)')
    .argument('<name>')
    .option('-d, --driver <driver>', 'network driver', 'bridge')
    .option('--subnet <cidr>', 'IPv4 subnet (default: a free /24 in 10.89.0.0/16)')
    .option('--gateway <ip>', 'gateway address (default: the first in the subnet)')
    .option('--internal', 'no traffic to or from outside the network')
    .option('--label <key=value>', 'set metadata on the network', collect)
    .action(
      act(async (name: string, o: { driver: string; subnet?: string; gateway?: string; internal?: boolean; label?: string[] }) => {
        const labels = parseLabels(o.label);
        const body = { Name: name, Driver: o.driver, Internal: !!o.internal, Labels: labels, IPAM: o.subnet ? { Config: [{ Subnet: o.subnet, Gateway: o.gateway }] } : undefined };
        const r = await api<{ Id: string }>('POST', '/networks/create', { body });
        process.stdout.write(`${r.Id}\n`);
        return 0;
      }),
    );
  network
    .command('ls')
    .alias('list')
    .description('list networks')
    .option('-q, --quiet', 'only display network IDs')
    .option('--format <template>', 'format output using a Go-style template')
    .option('--no-trunc', "don't truncate the output")
    .action(
      act(async (o: { quiet?: boolean; format?: string; trunc: boolean }) => {
        const nets = await api<Network[]>('GET', '/networks');
        const id = (s: string) => (o.trunc ? s.slice(0, 12) : s);
        if (o.quiet) process.stdout.write(nets.map((n) => `${id(n.Id)}\n`).join(''));
        else if (o.format) for (const n of nets) process.stdout.write(renderTemplate(o.format, n) + '\n');
        else process.stdout.write(table([['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'], ...nets.map((n) => [id(n.Id), n.Name, n.Driver, n.Scope])]) + '\n');
        return 0;
      }),
    );
  network
    .command('inspect')
    .description('display detailed information on networks')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .argument('<network...>')
    .action(act(async (names: string[], o: { format?: string }) => inspectEach(names, (n) => `/networks/${n}`, o.format)));
  network
    .command('rm')
    .alias('remove')
    .description('remove networks')
    .argument('<network...>')
    .action(act(async (names: string[]) => forEach(names, async (n) => void (await api('DELETE', `/networks/${encodeURIComponent(n)}`)))));
  network
    .command('connect')
    .description('connect a stopped container to a network (its VM gets a NIC on it at the next start)')
    .option('--alias <name>', 'add a network-scoped alias for the container', collect)
    .argument('<network>')
    .argument('<container>')
    .action(
      act(async (net: string, container: string, o: { alias?: string[] }) => {
        await api('POST', `/networks/${encodeURIComponent(net)}/connect`, { body: { Container: container, EndpointConfig: { Aliases: o.alias ?? [] } } });
        return 0;
      }),
    );
  network
    .command('disconnect')
    .description('disconnect a stopped container from a network (back to the default network)')
    .argument('<network>')
    .argument('<container>')
    .action(
      act(async (net: string, container: string) => {
        await api('POST', `/networks/${encodeURIComponent(net)}/disconnect`, { body: { Container: container } });
        return 0;
      }),
    );
  network
    .command('prune')
    .description('remove all unused networks')
    .option('-f, --force', 'do not prompt for confirmation')
    .action(
      act(async () => {
        const r = await api<{ NetworksDeleted: string[] }>('POST', '/networks/prune');
        if (r.NetworksDeleted.length) process.stdout.write(`Deleted Networks:\n${r.NetworksDeleted.join('\n')}\n`);
        return 0;
      }),
    );
}
