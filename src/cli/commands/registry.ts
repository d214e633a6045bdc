/** Registry commands: pull, push, login, logout. */
import type { Command } from 'commander';
import { encodeRegistryAuth } from '../../images/registry/auth.js';
import { familiarName, formatReference, parseReference } from '../../images/reference.js';
import { credentialsFor, removeCredentials, saveCredentials } from '../auth-store.js';
import { type Act, api, stream } from '../context.js';
import { ExitError } from '../exit-error.js';
import { ProgressRenderer } from '../progress.js';
import { readJsonMessages } from './archive.js';

function authHeader(server: string): Record<string, string> {
  const c = credentialsFor(server);
  return { 'X-Registry-Auth': encodeRegistryAuth(c ? { ...c, serveraddress: server } : {}) };
}

export async function pullImage(name: string, o: { platform?: string; quiet?: boolean }): Promise<number> {
  const ref = parseReference(name);
  const fromImage = familiarName({ ...ref, tag: undefined, digest: undefined });
  const res = await stream('POST', '/images/create', {
    query: { fromImage, tag: ref.digest ?? ref.tag, platform: o.platform },
    headers: authHeader(ref.domain),
  });
  const progress = new ProgressRenderer();
  const error = await readJsonMessages(res, (m) => {
    if (!o.quiet) progress.handle(m as { status?: string; id?: string; progress?: string });
  });
  if (error) throw new ExitError(1, `Error response from daemon: ${error}`);
  process.stdout.write(`${formatReference(ref)}\n`);
  return 0;
}

async function push(name: string, o: { quiet?: boolean }): Promise<number> {
  const ref = parseReference(name);
  const res = await stream('POST', `/images/${familiarName({ ...ref, tag: undefined })}/push`, {
    query: { tag: ref.tag },
    headers: authHeader(ref.domain),
  });
  const progress = new ProgressRenderer();
  const error = await readJsonMessages(res, (m) => {
    if (!o.quiet) progress.handle(m as { status?: string; id?: string; progress?: string });
  });
  if (error) throw new ExitError(1, `Error response from daemon: ${error}`);
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

async function login(server: string | undefined, o: { username?: string; password?: string; passwordStdin?: boolean }): Promise<number> {
  const address = server ?? 'docker.io';
  if (!o.username) throw new ExitError(1, 'Error: username is required (-u); hyperbox does not prompt');
  if (o.password && o.passwordStdin) throw new ExitError(1, '--password and --password-stdin are mutually exclusive');
  const password = o.passwordStdin ? await readStdin() : (o.password ?? '');
  if (!password) throw new ExitError(1, 'Error: password is required (-p or --password-stdin)');
  try {
    await api('POST', '/auth', { body: { username: o.username, password, serveraddress: address } });
  } catch (err) {
    throw new ExitError(1, `Error response from daemon: ${(err as Error).message}`);
  }
  saveCredentials(address, o.username, password);
  process.stdout.write('Login Succeeded\n');
  return 0;
}

export function registerRegistryCommands(program: Command, act: Act): void {
  const image = program.commands.find((c) => c.name() === 'image');
  for (const parent of image ? [program, image] : [program]) {
    parent
      .command('pull')
      .description('download an image from a registry')
      .option('--platform <os/arch[/variant]>', 'pick this platform from a multi-platform image')
      .option('-q, --quiet', 'suppress verbose output')
      .argument('<name>')
      .action(act(pullImage));
    parent
      .command('push')
      .description('upload an image to a registry')
      .option('-q, --quiet', 'suppress verbose output')
      .argument('<name>')
      .action(act(push));
  }
  program
    .command('login')
    .description('log in to a registry (credentials stored 0600 in $XDG_CONFIG_HOME/hyperbox/auth.json)')
    .option('-u, --username <user>', 'username')
    .option('-p, --password <password>', 'password')
    .option('--password-stdin', 'take the password from stdin')
    .argument('[server]')
    .action(act(login));
  program
    .command('logout')
    .description('log out from a registry')
    .argument('[server]')
    .action(
      act(async (server: string | undefined) => {
        const address = server ?? 'docker.io';
        if (removeCredentials(address)) process.stdout.write(`Removing login credentials for ${address}\n`);
        else process.stdout.write(`Not logged in to ${address}\n`);
        return 0;
      }),
    );
}
