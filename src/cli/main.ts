/**
 * `hyperbox`: the command-line client. Docker's commands, flags and exit codes
 * (125 engine error, 126 not executable, 127 not found, else the container's).
 * Each group of commands lives in commands/; this file wires them together.
 */
import { Command, CommanderError } from 'commander';
import { defaultHost, socketPathFromHost } from '../common/paths.js';
import { ApiClient, ApiError, ConnectError } from './client.js';
import { registerContainerCommands } from './commands/containers.js';
import { registerContainerStateCommands } from './commands/inspect-container.js';
import { registerFileCommands } from './commands/files.js';
import { registerArchiveCommands } from './commands/archive.js';
import { registerRegistryCommands } from './commands/registry.js';
import { registerImageCommands } from './commands/images.js';
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
    .option('-H, --host <host>', 'daemon socket to connect to (env HYPERBOX_HOST)')
    .enablePositionalOptions()
    .showSuggestionAfterError(false)
    .hook('preAction', (cmd) => {
      const { host, isDefault } = hostFromEnv(cmd.opts());
      useClient(new ApiClient(socketPathFromHost(host)), isDefault);
    });

  registerContainerCommands(program, act);
  registerContainerStateCommands(program, act);
  registerFileCommands(program, act);
  registerImageCommands(program, act);
  registerArchiveCommands(program, act);
  registerRegistryCommands(program, act);
  registerNetworkCommands(program, act);
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

