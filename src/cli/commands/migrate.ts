/** `migrate CONTAINER DEST`: moves a running container to another daemon, live (README "Live migration"). */
import fs from 'node:fs';
import type { Command } from 'commander';
import { ExitError } from '../exit-error.js';
import { type Act, api } from '../context.js';

interface MigrateOptions {
  destTlscacert?: string;
  destTlscert?: string;
  destTlskey?: string;
  quiet?: boolean;
}

function readPem(file: string | undefined, flag: string): string | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ExitError(125, `${flag} ${file}: ${(err as Error).message}`);
  }
}

export function registerMigrateCommand(program: Command, act: Act): void {
  program
    .command('migrate')
    .description('move a running container to another daemon, live (its processes keep their memory)')
    .argument('<container>')
    .argument('<destination>', 'the other daemon: unix:///path.sock or tcp://host:port (with --dest-tls*)')
    .option('--dest-tlscacert <file>', "the CA that signed the destination daemon's certificate")
    .option('--dest-tlscert <file>', 'client certificate for the destination')
    .option('--dest-tlskey <file>', 'client key for the destination')
    .option('-q, --quiet', 'print nothing on success')
    .action(
      act(async (container: string, destination: string, o: MigrateOptions) => {
        const ca = readPem(o.destTlscacert, '--dest-tlscacert');
        if ((o.destTlscert || o.destTlskey) && !ca) throw new ExitError(125, '--dest-tlscert and --dest-tlskey need --dest-tlscacert');
        const body = { Destination: destination, TLS: ca ? { CA: ca, Cert: readPem(o.destTlscert, '--dest-tlscert'), Key: readPem(o.destTlskey, '--dest-tlskey') } : undefined };
        const r = await api<{ Id: string; totalMs: number; downtimeMs: number; pausedMs: number; ramBytes: number }>('POST', `/hyperbox/containers/${encodeURIComponent(container)}/migrate`, { body });
        if (!o.quiet) process.stdout.write(`${r.Id.slice(0, 12)} migrated to ${destination} in ${r.totalMs} ms (guest paused ${r.pausedMs} ms, QEMU downtime ${r.downtimeMs} ms, ${Math.round(r.ramBytes / 1048576)} MiB of RAM sent)\n`);
        return 0;
      }),
    );
}
