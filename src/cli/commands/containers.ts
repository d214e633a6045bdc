/** Container commands: run, create, start, exec, ps, logs, stop, restart, kill, rm, wait, inspect. */
import { Command, Option } from 'commander';
import { monitorResize, pumpHijacked, rawTerminal, terminalSize } from '../attach.js';
import { ApiError, Demuxer } from '../client.js';
import { type Act, ago, api, apiClient, collect, filtersParam, forEach, stream, truncate } from '../context.js';
import { ExitError } from '../exit-error.js';
import { renderTemplate, table } from '../format.js';
import { createBody, type RunOptions } from './run-options.js';

export { parsePublish } from './run-options.js';

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
  const sock = await apiClient().hijack(`/containers/${id}/attach`, {
    query: { stream: true, stdin: !!o.interactive, stdout: true, stderr: true },
  });
  const waitRes = await stream('POST', `/containers/${id}/wait`, { query: { condition: o.rm ? 'removed' : 'next-exit' } });
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
  const sock = await apiClient().hijack(`/exec/${Id}/start`, { body: { Detach: false, Tty: !!o.tty, ConsoleSize: consoleSize } });
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
  const res = await stream('GET', `/containers/${container}/logs`, {
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
  Ports?: Array<{ IP?: string; PrivatePort: number; PublicPort?: number; Type: string }>;
  Id: string;
  Names: string[];
  Image: string;
  Command: string;
  Created: number;
  Status: string;
  State: string;
}

async function psCommand(o: { all?: boolean; quiet?: boolean; format?: string; noTrunc?: boolean; filter?: string[] }): Promise<number> {
  const list = await api<Summary[]>('GET', '/containers/json', { query: { all: !!o.all, filters: filtersParam(o.filter) } });
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
    Ports: (c.Ports ?? []).map((p) => (p.PublicPort ? `${p.IP ?? '0.0.0.0'}:${p.PublicPort}->${p.PrivatePort}/${p.Type}` : `${p.PrivatePort}/${p.Type}`)).join(', '),
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

function parseSeconds(v: string): number {
  if (!/^-?\d+$/.test(v)) throw new ExitError(125, `invalid argument "${v}" for "-t, --time" flag: strconv.ParseInt: parsing "${v}": invalid syntax`);
  return Number(v);
}

export function registerContainerCommands(program: Command, act: Act): void {
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
      .option('--restart <policy>', 'restart policy: no, always, unless-stopped, on-failure[:max-retries]')
      .option('--log-driver <driver>', 'logging driver (json-file)')
      .option('--storage-opt <size=N>', 'storage options: size (the writable disk, default 10G)', collect)
      .option('--log-opt <key=value>', 'log driver options: max-size, max-file', collect)
      .option('-v, --volume <src:dst[:ro]>', 'bind mount a host path or a named volume', collect)
      .option('--mount <spec>', 'attach a mount (type=bind|volume|tmpfs,source=,target=,readonly)', collect)
      .option('--tmpfs <path[:opts]>', 'mount a tmpfs in the container', collect)
      .option('--read-only', "mount the container's root filesystem as read only")
      .option('-p, --publish <[ip:]hostPort:containerPort[/proto]>', "publish a container's port to the host", collect)
      .option('-P, --publish-all', 'publish all exposed ports to random ports')
      .option('--network <mode>', 'network: default (the default bridge as root, else user-mode NAT), none, a user-defined network, or container:NAME')
      .option('--add-host <name:ip>', 'add a line to /etc/hosts (ip may be host-gateway: the host, as the gateway)', collect)
      .option('--network-alias <name>', 'add a network-scoped alias (user-defined networks)', collect)
      .option('--pod <name>', "run the container in this pod's VM (see pod create)")
      .option('--cap-add <cap>', 'add a Linux capability (NET_ADMIN, CAP_SYS_TIME, ALL...)', collect)
      .option('--cap-drop <cap>', 'drop a Linux capability (CHOWN, ALL...)', collect)
      .option('--privileged', 'give the container every capability (and an unmasked /proc)')
      .option('--init', 'run an init inside the container that forwards signals and reaps processes')
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
    .command('port')
    .description('list port mappings of a container')
    .argument('<container>')
    .argument('[port]', 'PRIVATE_PORT[/PROTO]')
    .action(
      act(async (container: string, port: string | undefined) => {
        const info = await api<{ NetworkSettings: { Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null> } }>('GET', `/containers/${container}/json`);
        const want = port ? (port.includes('/') ? port : `${port}/tcp`) : undefined;
        let found = false;
        for (const [key, list] of Object.entries(info.NetworkSettings.Ports ?? {})) {
          if (!list || (want && key !== want)) continue;
          for (const b of list) {
            found = true;
            process.stdout.write(want ? `${b.HostIp}:${b.HostPort}\n` : `${key} -> ${b.HostIp}:${b.HostPort}\n`);
          }
        }
        if (want && !found) throw new ExitError(1, `Error: No public port '${want}' published for ${container}`);
        return 0;
      }),
    );

  program
    .command('ps')
    .description('list containers')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display container IDs')
    .option('--no-trunc', "don't truncate output")
    .option('--format <template>', 'format output using a Go-style template')
    .option('-f, --filter <key=value>', 'filter output (label, name, id, status, exited, ancestor, network, volume, publish, expose, since, before; repeatable)', collect, [])
    .action(act(async (o: { all?: boolean; quiet?: boolean; format?: string; trunc?: boolean; filter: string[] }) => psCommand({ ...o, noTrunc: o.trunc === false })));

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
    .option('-v, --volumes', 'remove anonymous volumes associated with the container')
    .argument('<container...>')
    .action(act(async (ids: string[], o: { force?: boolean; volumes?: boolean }) => forEach(ids, async (id) => void (await api('DELETE', `/containers/${id}`, { query: { force: !!o.force, v: !!o.volumes } })))));

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
}
