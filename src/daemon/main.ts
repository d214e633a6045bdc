/**
 * `hyperboxd`: owns the VMs and state and serves the Docker Engine API on a
 * unix socket. Flags follow dockerd where they apply.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { z } from 'zod';
import { checkSocketFree, createDockerApiServer, listenTcp, listenUnix, type TlsFiles } from '../api/docker/server.js';
import { createLogger, parseLogLevel, type Logger, type LogLevel } from '../common/logger.js';
import { defaultConfigFile, defaultDataRoot, defaultHost, parseHost, type DaemonAddress } from '../common/paths.js';
import { Engine } from '../engine/engine.js';
import { claimDataRoot } from './claim.js';
import { chooseAccelerator, createDriver, locateGuestAssets, parseAccel } from '../vm/index.js';

const VERSION = '0.1.0';

const configSchema = z
  .object({
    hosts: z.array(z.string()).optional(),
    'data-root': z.string().optional(),
    'log-level': z.string().optional(),
    accel: z.enum(['auto', 'kvm', 'tcg']).optional(),
    kernel: z.string().optional(),
    initrd: z.string().optional(),
    'default-memory-mib': z.number().int().min(64).optional(),
    clone: z.boolean().optional(),
    'pool-size': z.number().int().min(0).max(1000).optional(),
    'live-restore': z.boolean().optional(),
    'insecure-registries': z.array(z.string()).optional(),
    tls: z.boolean().optional(),
    tlsverify: z.boolean().optional(),
    tlscacert: z.string().optional(),
    tlscert: z.string().optional(),
    tlskey: z.string().optional(),
    'allow-insecure-tcp': z.boolean().optional(),
    bip: z.string().optional(),
    bridge: z.literal('none').optional(),
    group: z.string().optional(),
  })
  .strict();
type DaemonConfig = z.infer<typeof configSchema>;

function loadConfig(file: string, explicit: boolean): DaemonConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const r = configSchema.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`invalid config file ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Proves the state dir is usable before anything else touches it. */
function checkDataRoot(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Private at every start, even if it already existed (or the CLI made it first):
    // it holds every container's environment, roots and logs.
    fs.chmodSync(dir, 0o700);
    const probe = path.join(dir, `.write-test-${process.pid}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (err) {
    let code = (err as NodeJS.ErrnoException).code;
    // Recursive mkdir reports ENOENT for a read-only parent: ask the first missing
    // component directly for the real reason.
    let missing = dir;
    while (!fs.existsSync(path.dirname(missing)) && path.dirname(missing) !== missing) missing = path.dirname(missing);
    if (code === 'ENOENT' && !fs.existsSync(missing)) {
      try {
        fs.mkdirSync(missing);
        fs.rmdirSync(missing);
      } catch (e) {
        code = (e as NodeJS.ErrnoException).code ?? code;
      }
    }
    throw new Error(`data root ${dir} is not writable: ${code ?? (err as Error).message}`);
  }
}

/** A group's ID, by name or number (/etc/group). */
function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const line = fs
    .readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === group);
  if (!line) throw new Error(`no such group "${group}" (-G/--group)`);
  return Number(line.split(':')[2]);
}

function cacheDir(): string {
  if (process.getuid?.() === 0) return '/var/cache/hyperbox';
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'hyperbox');
}

/** The TLS files for TCP listeners, from flags or the config file (dockerd's names). */
function tlsFiles(o: { tls?: boolean; tlsverify?: boolean; tlscacert?: string; tlscert?: string; tlskey?: string }, config: DaemonConfig): TlsFiles | undefined {
  const verify = o.tlsverify ?? config.tlsverify ?? false;
  if (!verify && !(o.tls ?? config.tls)) return undefined;
  const cert = o.tlscert ?? config.tlscert;
  const key = o.tlskey ?? config.tlskey;
  const ca = o.tlscacert ?? config.tlscacert;
  if (!cert || !key) throw new Error('--tls and --tlsverify need --tlscert and --tlskey');
  if (verify && !ca) throw new Error('--tlsverify needs --tlscacert (the CA that signs client certificates)');
  return { cert, key, ca: verify ? ca : undefined };
}

/** Like dockerd, no unauthenticated API on a network address: plain TCP only on loopback. */
/**
 * Plain TCP is refused on every address, loopback included: any local process
 * (and, through a host-mapped port, any container) that reaches it controls
 * the host. `--allow-insecure-tcp` opts in, loudly.
 */
function checkTcpSafety(a: DaemonAddress, tls: TlsFiles | undefined, allowInsecure: boolean, logger: Logger): void {
  if (a.kind !== 'tcp' || tls) return;
  if (!allowInsecure) {
    throw new Error(
      `refusing to serve the API on tcp://${a.host}:${a.port} without TLS (anyone who can connect controls the host): use --tlsverify (or a unix socket), or --allow-insecure-tcp if you really mean it`,
    );
  }
  logger.warn(`!!! the API is served WITHOUT TLS on tcp://${a.host}:${a.port}: anyone who can connect to it has root on this host (--allow-insecure-tcp) !!!`);
}

async function run(argv: string[]): Promise<void> {
  const program = new Command('hyperboxd')
    .description('hyperbox daemon: containers in lightweight VMs, behind the Docker Engine API')
    .option('-H, --host <host>', 'daemon socket to listen on', (v, prev: string[] = []) => [...prev, v])
    .option('--data-root <dir>', 'root directory of persistent state')
    .option('-l, --log-level <level>', 'log level (debug, info, warn, error, fatal)')
    .option('--accel <accel>', 'accelerator: auto (probe KVM by booting), kvm or tcg (env HYPERBOX_ACCEL)')
    .option('--config-file <file>', 'daemon configuration file')
    .option('--no-clone', 'always cold-boot container VMs instead of cloning a template')
    .option('--pool-size <n>', 'paused clones kept ready per guest shape (warm pool)')
    .option('--insecure-registry <host[:port]>', 'a registry reachable over plain HTTP (loopback ones always are)', (v, prev: string[] = []) => [...prev, v])
    .option('--live-restore', 'leave containers running when the daemon stops; the next daemon re-attaches them')
    .option('--tls', 'serve TCP hosts over TLS (--tlscert, --tlskey)')
    .option('--tlsverify', 'serve TCP hosts over TLS and require client certificates signed by --tlscacert')
    .option('--tlscacert <file>', 'CA that signs client certificates')
    .option('--tlscert <file>', "the daemon's TLS certificate")
    .option('--tlskey <file>', "the daemon's TLS key")
    .option('-G, --group <group>', 'group owning the unix socket (mode 0660; default: root only)')
    .option('--allow-insecure-tcp', 'serve tcp:// hosts without TLS (unsafe: anyone who connects controls the host)')
    .option('--bridge <none>', 'none: keep the default network on the VM driver\'s user-mode NAT even as root (no default bridge)')
    .option('--bip <cidr>', "the default bridge's address and subnet, e.g. 10.88.0.1/20 (as root; default: a free /20 in 10.88.0.0/16)")
    .option('--storage-driver <driver>', "where new containers' roots live: block (an image filesystem and a writable disk per container, the default) or overlay (a host overlay shared over 9p; 9p is another name for it)")
    .version(VERSION, '-v, --version')
    .exitOverride();
  program.parse(argv);
  const o = program.opts<{
    host?: string[];
    dataRoot?: string;
    logLevel?: string;
    accel?: string;
    configFile?: string;
    clone: boolean;
    poolSize?: string;
    liveRestore?: boolean;
    insecureRegistry?: string[];
    tls?: boolean;
    tlsverify?: boolean;
    tlscacert?: string;
    tlscert?: string;
    tlskey?: string;
    allowInsecureTcp?: boolean;
    group?: string;
    bip?: string;
    bridge?: string;
    storageDriver?: string;
  }>();
  // Until the daemon is up, a stop request is remembered rather than killing it halfway.
  // bin/hyperboxd remembers one that came while the modules loaded.
  let pendingSignal: string | undefined = (globalThis as { hyperboxEarlySignal?: string }).hyperboxEarlySignal;
  const early = (sig: NodeJS.Signals) => (pendingSignal ??= sig);
  process.on('SIGTERM', early).on('SIGINT', early);
  const config = loadConfig(o.configFile ?? defaultConfigFile(), !!o.configFile);
  const level: LogLevel = parseLogLevel(o.logLevel ?? config['log-level'] ?? 'info');
  const logger = createLogger(level);
  const addresses = (o.host ?? config.hosts ?? [defaultHost()]).map(parseHost);
  const tls = tlsFiles(o, config);
  if (o.bridge !== undefined && o.bridge !== 'none') throw new Error(`invalid --bridge "${o.bridge}": only "none" is supported`);
  const storageDriver = parseStorageDriver(o.storageDriver);
  for (const a of addresses) checkTcpSafety(a, tls, !!o.allowInsecureTcp || config['allow-insecure-tcp'] === true, logger);
  const dataRoot = path.resolve(o.dataRoot ?? config['data-root'] ?? defaultDataRoot());
  checkDataRoot(dataRoot);
  // Before anything is set up (networks, recovery of VMs): a daemon that cannot serve leaves the host as it found it.
  for (const a of addresses) if (a.kind === 'unix') await checkSocketFree(a.path);
  const releaseDataRoot = claimDataRoot(dataRoot, (msg) => logger.warn(msg));
  const requested = parseAccel(o.accel ?? process.env.HYPERBOX_ACCEL ?? config.accel);
  const assets = locateGuestAssets({ kernel: config.kernel, initrd: config.initrd });
  const accel = await chooseAccelerator({ requested, assets, cacheDir: cacheDir() });
  logger.info(`accelerator: ${accel.accel} (${accel.reason})`);

  const clone = o.clone && config.clone !== false;
  const liveRestore = !!o.liveRestore || config['live-restore'] === true;
  const insecureRegistries = [...(o.insecureRegistry ?? []), ...(config['insecure-registries'] ?? [])];
  const defaultMemoryMiB = config['default-memory-mib'] ?? 512;
  const poolSize = o.poolSize !== undefined ? Number(o.poolSize) : (config['pool-size'] ?? 0);
  if (!Number.isInteger(poolSize) || poolSize < 0) throw new Error(`invalid --pool-size "${o.poolSize}": expected a whole number`);
  const driver = createDriver({
    // HYPERBOX_TEMPLATE_DIR lets several daemons (the test suite's) share templates.
    templateDir: process.env.HYPERBOX_TEMPLATE_DIR ?? path.join(dataRoot, 'templates'),
    runRoot: path.join(dataRoot, 'run'),
    poolSize: clone ? poolSize : 0,
    logger,
  });
  for (const k of driver.templates.removeStale(assets)) logger.info(`removed stale template ${k}`);
  const engine = new Engine({
    dataRoot,
    assetOverrides: { kernel: config.kernel, initrd: config.initrd },
    accel,
    defaultMemoryMiB,
    bootTimeoutMs: accel.accel === 'kvm' ? 10_000 : 30_000,
    logger,
    clone,
    driver,
    defaultSubnet: o.bip ?? config.bip,
    defaultBridge: (o.bridge ?? config.bridge) !== 'none',
    storageDriver,
  });
  await engine.recover();
  // The default shape's template is made ahead of time, off the start path (with the
  // disks of a root on block devices under --storage-driver block: new containers' shape).
  // Under the block driver that is a template whose guest has a blank upper disk mounted ahead (a new container's default disk).
  if (clone) {
    void engine
      .templateShapes()
      .then(async ([first, ...others]) => {
        await driver.templates.ensure(first!);
        driver.fillPool(first!); // the others' pools fill on first need
        for (const shape of others) await driver.templates.ensure(shape);
      })
      .catch((err: Error) => logger.warn(`template: ${err.message}`));
  }
  const serverInfo = { defaultMemoryMiB, version: VERSION, accel: accel.accel, accelReason: accel.reason, dataRoot, qemuVersion: driver.version, liveRestore, insecureRegistries };
  const socketGid = o.group ?? config.group ? groupId(o.group ?? config.group!) : undefined;
  const servers: Array<ReturnType<typeof createDockerApiServer>> = [];
  const sockets: string[] = [];
  for (const a of addresses) {
    const server = createDockerApiServer(engine, serverInfo, logger, a.kind === 'tcp' ? tls : undefined);
    if (a.kind === 'unix') {
      await listenUnix(server, a.path);
      if (socketGid !== undefined) fs.chownSync(a.path, 0, socketGid);
      sockets.push(a.path);
    } else {
      await listenTcp(server, a.host, a.port);
    }
    servers.push(server);
    const where = a.kind === 'unix' ? a.path : `tcp://${a.host}:${a.port}${tls ? (tls.ca ? ' (TLS, client certificates verified)' : ' (TLS)') : ''}`;
    logger.info(`API listen on ${where} (data root ${dataRoot})`);
  }
  engine.restarts.onDaemonStart();

  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`received ${sig}: ${liveRestore ? 'leaving containers running (live restore)' : 'stopping containers'} and exiting`);
    for (const server of servers) server.close();
    await engine.shutdown({ liveRestore });
    for (const socket of sockets) fs.rmSync(socket, { force: true });
    releaseDataRoot();
    process.exit(0);
  };
  process.off('SIGTERM', early).off('SIGINT', early);
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // A signal that came during start-up (recovery, listening) is served now:
  // what the start found (re-attached VMs, a template being built) is stopped
  // or left for the next daemon as a normal stop would, not orphaned.
  if (pendingSignal) void shutdown(pendingSignal);
}

run(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.code === 'commander.version' || err.code === 'commander.helpDisplayed' ? 0 : 125);
  process.stderr.write(`hyperboxd: ${(err as Error).message}\n`);
  process.exit(1);
});

/**
 * Block (disks) is the default: FIFOs, device nodes and unix sockets work on the root,
 * small files are fast and the VM can migrate. "overlay" (Docker's name for what
 * `GraphDriver.Name` reports) or "9p" keeps roots as host overlays shared over 9p.
 */
function parseStorageDriver(value: string | undefined): '9p' | 'block' {
  const v = value ?? 'block';
  if (v === 'block') return 'block';
  if (v === 'overlay' || v === '9p') return '9p';
  throw new Error(`invalid --storage-driver "${v}": expected block or overlay`);
}
