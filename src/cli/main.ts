/**
 * `hyperbox`: the command-line client. Docker's commands, flags and exit codes
 * (125 engine error, 126 not executable, 127 not found, else the container's).
 * Each group of commands lives in commands/; this file wires them together.
 */
import { Command, CommanderError } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { defaultHost, parseHost } from '../common/paths.js';
import { ApiClient, ApiError, ConnectError, type ClientTls } from './client.js';
import { registerContainerCommands } from './commands/containers.js';
import { registerContainerStateCommands } from './commands/inspect-container.js';
import { registerFileCommands } from './commands/files.js';
import { registerArchiveCommands } from './commands/archive.js';
import { registerBuildCommands } from './commands/build.js';
import { registerRegistryCommands } from './commands/registry.js';
import { registerImageCommands } from './commands/images.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerNetworkCommands } from './commands/networks.js';
import { registerPodCommands } from './commands/pods.js';
import { CLIENT_VERSION, registerSystemCommands } from './commands/system.js';
import { registerTemplateCommands } from './commands/templates.js';
import { registerVolumeCommands } from './commands/volumes.js';
import { type Act, useClient } from './context.js';
import { ExitError } from './exit-error.js';

function hostFromEnv(opts: { host?: string }): { host: string; isDefault: boolean } {
  const explicit = opts.host ?? process.env.HYPERBOX_HOST;
  return { host: explicit ?? defaultHost(), isDefault: !explicit };
}

interface TlsOptions {
  tlsverify?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
}

/**
 * TLS to a TCP daemon, the docker CLI's way: `--tlsverify` or HYPERBOX_TLS_VERIFY,
 * files from the flags or from HYPERBOX_CERT_PATH (ca.pem, cert.pem, key.pem).
 */
function clientTls(o: TlsOptions): ClientTls | undefined {
  const certPath = process.env.HYPERBOX_CERT_PATH;
  if (!(o.tlsverify || process.env.HYPERBOX_TLS_VERIFY || o.tlscacert)) return undefined;
  const file = (flag: string | undefined, name: string) => flag ?? (certPath ? path.join(certPath, name) : undefined);
  const read = (f: string | undefined, flag: string) => {
    if (!f) throw new ExitError(125, `TLS needs ${flag} or HYPERBOX_CERT_PATH`);
    try {
      return fs.readFileSync(f);
    } catch (err) {
      throw new ExitError(125, `cannot read ${f}: ${(err as Error).message}`);
    }
  };
  const ca = read(file(o.tlscacert, 'ca.pem'), '--tlscacert');
  const certFile = file(o.tlscert, 'cert.pem');
  if (!certFile || !fs.existsSync(certFile)) return { ca };
  return { ca, cert: read(certFile, '--tlscert'), key: read(file(o.tlskey, 'key.pem'), '--tlskey') };
}

function stopReason(msg: string): number {
  if (/executable file not found|no such file or directory/.test(msg)) return 127;
  if (/permission denied|is a directory|not executable/.test(msg)) return 126;
  return 125;
}

// ---- program -------------------------------------------------------------------

function buildProgram(setStatus: (n: number) => void): Command {
  const program = new Command('hyperbox');
  const act: Act = (fn: (...args: never[]) => Promise<number>) =>
    (async (...args: never[]) => setStatus(await fn(...args))) as (...args: unknown[]) => Promise<void>;

  // Before any subcommand is added: they inherit both.
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s.replace(/^error: /, 'hyperbox: ')) });
  program
    .description('Run containers, each in its own lightweight virtual machine')
    .version(CLIENT_VERSION, '-v, --version', 'print the client version')
    .option('-H, --host <host>', 'daemon to connect to: unix:///path or tcp://host:port (env HYPERBOX_HOST)')
    .option('--tlsverify', 'use TLS and verify the daemon (env HYPERBOX_TLS_VERIFY)')
    .option('--tlscacert <file>', 'trust certificates signed by this CA (default $HYPERBOX_CERT_PATH/ca.pem)')
    .option('--tlscert <file>', 'client certificate (default $HYPERBOX_CERT_PATH/cert.pem)')
    .option('--tlskey <file>', 'client key (default $HYPERBOX_CERT_PATH/key.pem)')
    .enablePositionalOptions()
    .showSuggestionAfterError(false)
    .hook('preAction', (cmd) => {
      const opts = cmd.opts<{ host?: string } & TlsOptions>();
      const { host, isDefault } = hostFromEnv(opts);
      let address;
      try {
        address = parseHost(host);
      } catch (err) {
        throw new ExitError(125, (err as Error).message);
      }
      useClient(new ApiClient(address, address.kind === 'tcp' ? clientTls(opts) : undefined), isDefault);
    });

  registerContainerCommands(program, act);
  registerContainerStateCommands(program, act);
  registerFileCommands(program, act);
  registerImageCommands(program, act);
  registerArchiveCommands(program, act);
  registerBuildCommands(program, act);
  registerRegistryCommands(program, act);
  registerNetworkCommands(program, act);
  registerMigrateCommand(program, act);
  registerPodCommands(program, act);
  registerSystemCommands(program, act);
  registerTemplateCommands(program, act);
  registerVolumeCommands(program, act);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  let status = 0;
  const program = buildProgram((n) => (status = n));
  try {
    await program.parseAsync(argv);
    return status;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 125;
    }
    if (err instanceof ExitError) {
      process.stderr.write(`hyperbox: ${err.message}\n`);
      return err.status;
    }
    if (err instanceof ConnectError) {
      process.stderr.write(`${err.message}\n`);
      return 125;
    }
    if (err instanceof ApiError) {
      process.stderr.write(`hyperbox: Error response from daemon: ${err.message}\n`);
      return stopReason(err.message);
    }
    process.stderr.write(`hyperbox: ${(err as Error).message}\n`);
    return 125;
  }
}

