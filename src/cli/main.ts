/**
 * `hyperbox`: the command-line client. Docker's commands, flags and exit codes
 * (125 engine error, 126 not executable, 127 not found, else the container's).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { defaultDataRoot, defaultHost, socketPathFromHost } from '../common/paths.js';
import { repoRoot } from '../vm/assets.js';
import { ApiClient, ApiError, ConnectError, Demuxer } from './client.js';
import { ExitError } from './exit-error.js';
import { renderTemplate, table } from './format.js';
import { parseBytes, parseCpus } from './units.js';


const VERSION = '0.1.0';

function hostFromEnv(opts: { host?: string }): { host: string; isDefault: boolean } {
  const explicit = opts.host ?? process.env.HYPERBOX_HOST;
  return { host: explicit ?? defaultHost(), isDefault: !explicit };
}

let client: ApiClient | undefined;
let autostart = false;

/** Starts hyperboxd in the background for the default host, as a convenience. */
async function startDaemon(c: ApiClient): Promise<void> {
  const dataRoot = defaultDataRoot();
  fs.mkdirSync(dataRoot, { recursive: true });
  const log = fs.openSync(path.join(dataRoot, 'hyperboxd.log'), 'a');
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/src/daemon/main.js'), '-H', `unix://${c.socketPath}`], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  child.unref();
  const deadline = Date.now() + 60_000;
  let exited = false;
  child.once('exit', () => (exited = true));
  while (Date.now() < deadline && !exited) {
    try {
      await c.request('GET', '/_ping');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new ExitError(125, `hyperboxd did not start: see ${path.join(dataRoot, 'hyperboxd.log')}`);
}

async function api<T = unknown>(method: string, p: string, opts: Parameters<ApiClient['request']>[2] = {}): Promise<T> {
  try {
    return await client!.request<T>(method, p, opts);
  } catch (err) {
    if (err instanceof ConnectError && autostart) {
      autostart = false;
      await startDaemon(client!);
      return client!.request<T>(method, p, opts);
    }
    throw err;
  }
}

function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

function stopReason(msg: string): number {
  if (/executable file not found|no such file or directory/.test(msg)) return 127;
  if (/permission denied|is a directory|not executable/.test(msg)) return 126;
  return 125;
}

// ---- attach plumbing -----------------------------------------------------------

interface StreamOpts {
  tty: boolean;
  stdin: boolean;
}

/** Copies a hijacked stream to our stdout/stderr (and stdin to it). Resolves when output ends. */
function pumpHijacked(sock: import('node:net').Socket, o: StreamOpts): Promise<void> {
  return new Promise((resolve) => {
    if (o.tty) sock.on('data', (d: Buffer) => process.stdout.write(d));
    else {
      const demux = new Demuxer((stream, data) => (stream === 2 ? process.stderr : process.stdout).write(data));
      sock.on('data', (d: Buffer) => demux.push(d));
    }
    sock.on('end', () => resolve());
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    if (o.stdin) {
      process.stdin.on('data', (d: Buffer) => sock.write(d));
      process.stdin.on('end', () => sock.end());
    } else {
      sock.end(); // half-close: we send nothing, as the docker CLI does
    }
  });
}

function rawTerminal(on: boolean): void {
  if (process.stdin.isTTY) process.stdin.setRawMode(on);
}

function terminalSize(): { h: number; w: number } | undefined {
  return process.stdout.isTTY ? { h: process.stdout.rows, w: process.stdout.columns } : undefined;
}

function monitorResize(resizePath: string): () => void {
  const send = () => {
    const s = terminalSize();
    if (s) void api('POST', resizePath, { query: s }).catch(() => undefined);
  };
  send();
  process.on('SIGWINCH', send);
  return () => process.off('SIGWINCH', send);
}

// ---- commands ------------------------------------------------------------------

interface RunOptions {
  interactive?: boolean;
  tty?: boolean;
  detach?: boolean;
  rm?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
  name?: string;
  entrypoint?: string;
  hostname?: string;
  memory?: string;
  cpus?: string;
  clone?: boolean;
}

function createBody(image: string, command: string[], o: RunOptions) {
  const size = terminalSize();
  return {
    Image: image,
    Cmd: command.length ? command : null,
    Entrypoint: o.entrypoint !== undefined ? (o.entrypoint === '' ? [''] : [o.entrypoint]) : null,
    Env: (o.env ?? []).map((e) => (e.includes('=') ? e : process.env[e] !== undefined ? `${e}=${process.env[e]}` : e)).filter((e) => e.includes('=')),
    WorkingDir: o.workdir ?? '',
    User: o.user ?? '',
    Hostname: o.hostname ?? '',
    Tty: !!o.tty,
    OpenStdin: !!o.interactive,
    StdinOnce: !!o.interactive,
    AttachStdin: !!o.interactive && !o.detach,
    AttachStdout: !o.detach,
    AttachStderr: !o.detach,
    Labels: o.clone === false ? { 'io.hyperbox.no-clone': '1' } : {},
    HostConfig: {
      AutoRemove: !!o.rm,
      Memory: o.memory ? parseBytes(o.memory, '-m, --memory') : 0,
      NanoCpus: o.cpus ? parseCpus(o.cpus) : 0,
      ConsoleSize: o.tty && size ? [size.h, size.w] : [0, 0],
    },
  };
}

async function createContainer(image: string, command: string[], o: RunOptions): Promise<string> {
  const body = createBody(image, command, o);
  const res = await api<{ Id: string }>('POST', '/containers/create', { query: { name: o.name }, body });
  return res.Id;
}

async function runCommand(image: string, command: string[], o: RunOptions): Promise<number> {
  if (o.entrypoint === '') o.entrypoint = undefined;
  const id = await createContainer(image, command, o);
  if (o.detach) {
    try {
      await api('POST', `/containers/${id}/start`);
    } catch (err) {
      if (o.rm) await api('DELETE', `/containers/${id}`, { query: { force: true } }).catch(() => undefined);
      throw err;
    }
    process.stdout.write(`${id}\n`);
    return 0;
  }
  const sock = await client!.hijack(`/containers/${id}/attach`, {
    query: { stream: true, stdin: !!o.interactive, stdout: true, stderr: true },
  });
  const waitRes = await client!.stream('POST', `/containers/${id}/wait`, { query: { condition: o.rm ? 'removed' : 'next-exit' } });
  const waitBody = (async () => {
    const chunks: Buffer[] = [];
    for await (const c of waitRes as AsyncIterable<Buffer>) chunks.push(c);
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { StatusCode?: number; Error?: { Message: string } };
  })().catch(() => ({ StatusCode: 125 }) as { StatusCode?: number });
  try {
    await api('POST', `/containers/${id}/start`);
  } catch (err) {
    sock.destroy();
    waitRes.destroy();
    if (o.rm) await api('DELETE', `/containers/${id}`, { query: { force: true } }).catch(() => undefined);
    throw err;
  }
  const tty = !!o.tty;
  if (tty) rawTerminal(true);
  const stopResize = tty ? monitorResize(`/containers/${id}/resize`) : () => undefined;
  // Signal proxy: forward what we receive, as `docker run` does.
  const forward = (sig: NodeJS.Signals) => void api('POST', `/containers/${id}/kill`, { query: { signal: sig } }).catch(() => undefined);
  if (!tty) for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) process.on(s, forward);
  try {
    await pumpHijacked(sock, { tty, stdin: !!o.interactive });
    const result = await waitBody;
    return result.StatusCode ?? 125;
  } finally {
    stopResize();
    if (tty) rawTerminal(false);
    process.stdin.pause();
  }
}

async function execCommand(container: string, command: string[], o: { interactive?: boolean; tty?: boolean; detach?: boolean; env?: string[]; workdir?: string; user?: string }): Promise<number> {
  const size = terminalSize();
  const consoleSize = o.tty && size ? [size.h, size.w] : undefined;
  const { Id } = await api<{ Id: string }>('POST', `/containers/${container}/exec`, {
    body: {
      Cmd: command,
      Env: o.env ?? [],
      User: o.user ?? '',
      WorkingDir: o.workdir ?? '',
      Tty: !!o.tty,
      AttachStdin: !!o.interactive && !o.detach,
      AttachStdout: !o.detach,
      AttachStderr: !o.detach,
      ConsoleSize: consoleSize,
    },
  });
  if (o.detach) {
    await api('POST', `/exec/${Id}/start`, { body: { Detach: true, Tty: !!o.tty } });
    return 0;
  }
  const sock = await client!.hijack(`/exec/${Id}/start`, { body: { Detach: false, Tty: !!o.tty, ConsoleSize: consoleSize } });
  if (o.tty) rawTerminal(true);
  const stopResize = o.tty ? monitorResize(`/exec/${Id}/resize`) : () => undefined;
  try {
    await pumpHijacked(sock, { tty: !!o.tty, stdin: !!o.interactive });
  } finally {
    stopResize();
    if (o.tty) rawTerminal(false);
    process.stdin.pause();
  }
  const info = await api<{ ExitCode: number | null }>('GET', `/exec/${Id}/json`);
  return info.ExitCode ?? 125;
}

async function logsCommand(container: string, o: { follow?: boolean; timestamps?: boolean; tail?: string }): Promise<number> {
  const info = await api<{ Config: { Tty: boolean } }>('GET', `/containers/${container}/json`);
  const res = await client!.stream('GET', `/containers/${container}/logs`, {
    query: { stdout: true, stderr: true, follow: !!o.follow, timestamps: !!o.timestamps, tail: o.tail ?? 'all' },
  });
  const demux = new Demuxer((s, d) => (s === 2 ? process.stderr : process.stdout).write(d));
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (info.Config.Tty) process.stdout.write(chunk);
    else demux.push(chunk);
  }
  return 0;
}

interface Summary {
  Id: string;
  Names: string[];
  Image: string;
  Command: string;
  Created: number;
  Status: string;
  State: string;
}

function ago(unixSeconds: number): string {
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 60) return `${Math.round(s)} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

async function psCommand(o: { all?: boolean; quiet?: boolean; format?: string; noTrunc?: boolean }): Promise<number> {
  const list = await api<Summary[]>('GET', '/containers/json', { query: { all: !!o.all } });
  if (o.quiet) {
    for (const c of list) process.stdout.write(`${o.noTrunc ? c.Id : c.Id.slice(0, 12)}\n`);
    return 0;
  }
  const rows = list.map((c) => ({
    ID: o.noTrunc ? c.Id : c.Id.slice(0, 12),
    Image: c.Image,
    Command: `"${o.noTrunc ? c.Command : truncate(c.Command, 20)}"`,
    CreatedAt: new Date(c.Created * 1000).toISOString(),
    RunningFor: ago(c.Created),
    Status: c.Status,
    State: c.State,
    Ports: '',
    Names: c.Names.map((n) => n.replace(/^\//, '')).join(','),
  }));
  if (o.format) {
    for (const r of rows) process.stdout.write(renderTemplate(o.format, r) + '\n');
    return 0;
  }
  const header = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'];
  process.stdout.write(table([header, ...rows.map((r) => [r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names])]) + '\n');
  return 0;
}

async function forEach(ids: string[], fn: (id: string) => Promise<void>): Promise<number> {
  let status = 0;
  for (const id of ids) {
    try {
      await fn(id);
      process.stdout.write(`${id}\n`);
    } catch (err) {
      process.stderr.write(`Error response from daemon: ${(err as Error).message}\n`);
      status = 1;
    }
  }
  return status;
}

function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n < 10 && i ? n.toFixed(2) : n < 100 && i ? n.toFixed(1) : Math.round(n)}${units[i]}`;
}

// ---- program -------------------------------------------------------------------

function buildProgram(setStatus: (n: number) => void): Command {
  const program = new Command('hyperbox');
  const act = (fn: (...args: never[]) => Promise<number>) =>
    (async (...args: never[]) => setStatus(await fn(...args))) as (...args: unknown[]) => Promise<void>;

  // Before any subcommand is added: they inherit both.
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s.replace(/^error: /, 'hyperbox: ')) });
  program
    .description('Run containers, each in its own lightweight virtual machine')
    .version(VERSION, '-v, --version', 'print the client version')
    .option('-H, --host <host>', 'daemon socket to connect to (env HYPERBOX_HOST)')
    .enablePositionalOptions()
    .showSuggestionAfterError(false)
    .hook('preAction', (cmd) => {
      const { host, isDefault } = hostFromEnv(cmd.opts());
      client = new ApiClient(socketPathFromHost(host));
      autostart = isDefault;
    });

  const runLike = (cmd: Command) =>
    cmd
      .helpOption('--help', 'display help for command')
      .option('-i, --interactive', 'keep STDIN open even if not attached')
      .option('-t, --tty', 'allocate a pseudo-TTY')
      .option('-e, --env <KEY=VALUE>', 'set environment variables', collect)
      .option('-w, --workdir <dir>', 'working directory inside the container')
      .option('-u, --user <user[:group]>', 'username or UID')
      .option('--name <name>', 'assign a name to the container')
      .option('--entrypoint <cmd>', 'overwrite the default ENTRYPOINT of the image')
      .option('-h, --hostname <name>', 'container host name')
      .option('-m, --memory <bytes>', 'memory limit (the VM gets this much plus its own overhead)')
      .option('--cpus <number>', 'number of CPUs (VM vCPUs)')
      .argument('<image>')
      .argument('[command...]')
      .passThroughOptions();

  runLike(program.command('run').description('create and run a new container from an image'))
    .option('-d, --detach', 'run container in background and print container ID')
    .option('--no-clone', 'cold-boot this container VM instead of cloning a template')
    .option('--rm', 'automatically remove the container when it exits')
    .action(act(async (image: string, command: string[], o: RunOptions) => runCommand(image, command, o)));

  runLike(program.command('create').description('create a new container'))
    .option('--rm', 'automatically remove the container when it exits')
    .action(
      act(async (image: string, command: string[], o: RunOptions) => {
        process.stdout.write(`${await createContainer(image, command, { ...o, detach: true })}\n`);
        return 0;
      }),
    );

  program
    .command('start')
    .description('start one or more stopped containers')
    .argument('<container...>')
    .action(act(async (ids: string[]) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/start`)))));

  program
    .command('exec')
    .description('execute a command in a running container')
    .option('-i, --interactive', 'keep STDIN open even if not attached')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('-d, --detach', 'run the command in the background')
    .option('-e, --env <KEY=VALUE>', 'set environment variables', collect)
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'username or UID')
    .argument('<container>')
    .argument('<command...>')
    .passThroughOptions()
    .action(act(async (c: string, cmd: string[], o: Parameters<typeof execCommand>[2]) => execCommand(c, cmd, o)));

  program
    .command('ps')
    .description('list containers')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display container IDs')
    .option('--no-trunc', "don't truncate output")
    .option('--format <template>', 'format output using a Go-style template')
    .action(act(async (o: { all?: boolean; quiet?: boolean; format?: string; trunc?: boolean }) => psCommand({ ...o, noTrunc: o.trunc === false })));

  program
    .command('logs')
    .description('fetch the logs of a container')
    .option('-f, --follow', 'follow log output')
    .option('-t, --timestamps', 'show timestamps')
    .option('-n, --tail <lines>', 'number of lines to show from the end of the logs', 'all')
    .argument('<container>')
    .action(act(async (c: string, o: { follow?: boolean; timestamps?: boolean; tail?: string }) => logsCommand(c, o)));

  program
    .command('stop')
    .description('stop one or more running containers')
    .addOption(new Option('-t, --time <seconds>', 'seconds to wait before killing the container').argParser(parseSeconds))
    .option('-s, --signal <signal>', 'signal to send to the container')
    .argument('<container...>')
    .action(act(async (ids: string[], o: { time?: number; signal?: string }) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/stop`, { query: { t: o.time, signal: o.signal } })))));

  program
    .command('restart')
    .description('restart one or more containers')
    .addOption(new Option('-t, --time <seconds>', 'seconds to wait before killing the container').argParser(parseSeconds))
    .argument('<container...>')
    .action(act(async (ids: string[], o: { time?: number }) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/restart`, { query: { t: o.time } })))));

  program
    .command('kill')
    .description('kill one or more running containers')
    .option('-s, --signal <signal>', 'signal to send to the container', 'KILL')
    .argument('<container...>')
    .action(act(async (ids: string[], o: { signal: string }) => forEach(ids, async (id) => void (await api('POST', `/containers/${id}/kill`, { query: { signal: o.signal } })))));

  program
    .command('rm')
    .description('remove one or more containers')
    .option('-f, --force', 'force the removal of a running container')
    .argument('<container...>')
    .action(act(async (ids: string[], o: { force?: boolean }) => forEach(ids, async (id) => void (await api('DELETE', `/containers/${id}`, { query: { force: !!o.force } })))));

  program
    .command('wait')
    .description('block until one or more containers stop, then print their exit codes')
    .argument('<container...>')
    .action(
      act(async (ids: string[]) => {
        let status = 0;
        for (const id of ids) {
          try {
            const r = await api<{ StatusCode: number }>('POST', `/containers/${id}/wait`);
            process.stdout.write(`${r.StatusCode}\n`);
          } catch (err) {
            process.stderr.write(`Error response from daemon: ${(err as Error).message}\n`);
            status = 1;
          }
        }
        return status;
      }),
    );

  program
    .command('inspect')
    .description('return low-level information on containers or images')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .argument('<name...>')
    .action(
      act(async (names: string[], o: { format?: string }) => {
        const out: unknown[] = [];
        let status = 0;
        for (const n of names) {
          try {
            out.push(await api('GET', `/containers/${n}/json`));
          } catch (err) {
            if (!(err instanceof ApiError && err.status === 404)) throw err;
            try {
              out.push(await api('GET', `/images/${n}/json`));
            } catch {
              process.stderr.write(`Error: No such object: ${n}\n`);
              status = 1;
            }
          }
        }
        if (o.format) for (const x of out) process.stdout.write(renderTemplate(o.format, x) + '\n');
        else process.stdout.write(JSON.stringify(out, null, 4) + '\n');
        return status;
      }),
    );

  program
    .command('info')
    .description('display system-wide information')
    .option('-f, --format <template>', 'format output using a Go-style template')
    .action(
      act(async (o: { format?: string }) => {
        const i = await api<Record<string, unknown> & { HyperBox: { Accelerator: string; AcceleratorReason: string; QemuVersion: string; Templates: number; PoolSize: number; PoolReady: number } }>('GET', '/info');
        if (o.format) {
          process.stdout.write(renderTemplate(o.format, i) + '\n');
          return 0;
        }
        const lines = [
          `Server Version: ${i.ServerVersion}`,
          `Containers: ${i.Containers} (running ${i.ContainersRunning}, stopped ${i.ContainersStopped})`,
          `Images: ${i.Images}`,
          `Hypervisor: QEMU ${i.HyperBox.QemuVersion} (microvm)`,
          `Accelerator: ${i.HyperBox.Accelerator}`,
          `Accelerator Reason: ${i.HyperBox.AcceleratorReason}`,
          `Templates: ${i.HyperBox.Templates}`,
          `Warm Pool: ${i.HyperBox.PoolReady} ready of ${i.HyperBox.PoolSize}`,
          `Storage Driver: ${i.Driver}`,
          `Root Dir: ${i.DockerRootDir}`,
          `CPUs: ${i.NCPU}`,
          `Total Memory: ${humanSize(Number(i.MemTotal))}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        return 0;
      }),
    );

  program
    .command('version')
    .description('show the hyperbox version information')
    .action(
      act(async () => {
        process.stdout.write(`Client:\n Version:    ${VERSION}\n API version: 1.51\n Node:       ${process.version}\n\n`);
        const v = await api<{ Version: string; ApiVersion: string; MinAPIVersion: string; Components: Array<{ Name: string; Version: string; Details: Record<string, string> }> }>('GET', '/version');
        const hv = v.Components.find((c) => c.Name === 'hypervisor');
        process.stdout.write(
          `Server: hyperbox\n Engine:\n  Version:     ${v.Version}\n  API version: ${v.ApiVersion} (minimum version ${v.MinAPIVersion})\n Hypervisor:\n  QEMU:        ${hv?.Version}\n  Accelerator: ${hv?.Details.Accelerator}\n`,
        );
        return 0;
      }),
    );

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
    .description('create the template for a guest shape ahead of time')
    .option('-m, --memory <bytes>', 'guest memory')
    .option('--cpus <n>', 'vCPUs')
    .action(
      act(async (o: { memory?: string; cpus?: string }) => {
        const body = { MemoryMiB: o.memory ? Math.round(parseBytes(o.memory, '-m, --memory') / 1048576) : undefined, Cpus: o.cpus ? Math.round(parseCpus(o.cpus) / 1e9) : undefined };
        const r = await api<{ Key: string }>('POST', '/hyperbox/templates', { body });
        process.stdout.write(`${r.Key}\n`);
        return 0;
      }),
    );
  template
    .command('rm')
    .description('remove templates')
    .argument('<key...>')
    .action(act(async (keys: string[]) => forEach(keys, async (k) => void (await api('DELETE', `/hyperbox/templates/${k}`)))));

  return program;
}

function parseSeconds(v: string): number {
  if (!/^-?\d+$/.test(v)) throw new ExitError(125, `invalid argument "${v}" for "-t, --time" flag: strconv.ParseInt: parsing "${v}": invalid syntax`);
  return Number(v);
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

