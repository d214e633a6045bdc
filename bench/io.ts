/**
 * bench/io: file and network I/O of a container against the same operation run
 * natively on the host, in one invocation:
 *  - sequential write (fsync'd) and read of 128 MB, on the container root (overlay
 *    over 9p), on a root on block devices (`--storage-driver block`: erofs + ext4
 *    disk, overlay in the guest) and on a bind mount (9p), vs. the host's own disk;
 *  - 1000 small files created and read back (page cache dropped first) by busybox
 *    sh, same places;
 *  - the TCG floor: the same file script on a tmpfs inside the block-root VM and on
 *    the host's /dev/shm (no storage at all: the ratio is the emulated CPU's cost),
 *    and a shell loop writing to /dev/null (the small-file loop without a file);
 *  - TCP: on the default network (as root a bridge, docker0's equivalent) host ->
 *    container through a published port and container -> container, the same on
 *    the user-mode network (`--bridge none`) for comparison, container ->
 *    container in one pod (localhost inside a VM) and on a user-defined bridge
 *    network, vs. loopback on the host.
 * Usage: node dist/bench/io.js [net|files]   (net: the TCP figures only; files: the file figures only)
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemonWithBusybox, type TestDaemon } from '../test/helpers/daemon.js';
import { freePort } from '../test/helpers/net.js';

const MB = 128;
const FILES = 1000;
const d = await startDaemonWithBusybox(['--storage-driver', 'overlay']);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-io-'));
const bind = path.join(work, 'bind');
fs.mkdirSync(bind);

/** Times shell snippets inside the container: each prints "<label> <ms>". */
function timedScript(dir: string): string {
  // busybox date has no %N: /proc/uptime gives centiseconds, in the guest and on the host alike.
  const now = "cut -d' ' -f1 /proc/uptime";
  const since = (label: string) => `echo ${label} $(awk "BEGIN{print int(($(${now}) - $t) * 1000)}")`;
  return [
    `cd ${dir}`,
    `t=$(${now}); dd if=/dev/zero of=seq bs=1M count=${MB} conv=fsync 2>/dev/null; ${since('seqwrite')}`,
    `sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; t=$(${now}); dd if=seq of=/dev/null bs=1M 2>/dev/null; ${since('seqread')}`,
    `rm -f seq; mkdir -p small; t=$(${now}); i=0; while [ $i -lt ${FILES} ]; do echo hello > small/$i; i=$((i+1)); done; sync; ${since('smallwrite')}`,
    `sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; t=$(${now}); cat small/* > /dev/null; ${since('smallread')}`,
    'rm -rf small',
    `t=$(${now}); i=0; while [ $i -lt ${FILES} ]; do echo hello > /dev/null; i=$((i+1)); done; ${since('shloop')}`,
  ].join('; ');
}

function parse(out: string): Record<string, number> {
  return Object.fromEntries(out.trim().split('\n').map((l) => l.split(' ')).filter((p) => p.length === 2).map(([k, v]) => [k!, Number(v)]));
}

const hostDir = path.join(work, 'native');
fs.mkdirSync(hostDir);
const netOnly = process.argv[2] === 'net';
const native = netOnly ? {} : parse(execFileSync('busybox', ['sh', '-c', timedScript(hostDir)], { encoding: 'utf8' }));
const shmDir = fs.mkdtempSync('/dev/shm/hb-bench-io-');
const nativeTmpfs = netOnly ? {} : parse(execFileSync('busybox', ['sh', '-c', timedScript(shmDir)], { encoding: 'utf8' }));
fs.rmSync(shmDir, { recursive: true, force: true });
const root = netOnly ? undefined : await d.run(['run', '--rm', 'busybox', 'sh', '-c', timedScript('/tmp')], { timeoutMs: 600_000 });
const bound = netOnly ? undefined : await d.run(['run', '--rm', '-v', `${bind}:/data`, 'busybox', 'sh', '-c', timedScript('/data')], { timeoutMs: 600_000 });
const inRoot = parse(root?.stdout ?? '');
let inBlock: Record<string, number> = {};
let guestTmpfs: Record<string, number> = {};
if (!netOnly) {
  const b = await startDaemonWithBusybox(['--storage-driver', 'block']);
  try {
    // One VM: the root first, then a tmpfs of the same guest (the TCG floor), each line prefixed.
    const script = `(${timedScript('/tmp')}) | sed 's/^/root./'; (${timedScript('/scratch')}) | sed 's/^/tmpfs./'`;
    const out = parse((await b.run(['run', '--rm', '--tmpfs', '/scratch:size=400m', 'busybox', 'sh', '-c', script], { timeoutMs: 600_000 })).stdout);
    const pick = (prefix: string) => Object.fromEntries(Object.entries(out).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    inBlock = pick('root.');
    guestTmpfs = pick('tmpfs.');
  } finally {
    await b.stop();
  }
}
const inBind = parse(bound?.stdout ?? '');
if (process.argv[2] === 'files') {
  await d.stop();
  fs.rmSync(work, { recursive: true, force: true });
  printFileRows();
  process.exit(0);
}

// TCP: the receiver times itself from its first byte to the last of 64 MB
// (busybox `time dd` in the receiving VM, or on the host for the baseline), so
// buffers along the path cannot flatter the figure. The sender keeps its stdin
// open afterwards: busybox nc quits at stdin EOF, possibly before the data left.
// The fifo lives on tmpfs: Debian's QEMU 7.2 refuses FIFOs on 9p (see README).
const NET_MB = 64;
const receiver = (port: number, nc = 'nc', dd = 'dd', tm = 'time') =>
  `rm -f /dev/shm/hbf-${port}; mkfifo /dev/shm/hbf-${port}; exec 3<>/dev/shm/hbf-${port}; ${nc} -l -p ${port} <&3 | (${dd} bs=1 count=1 of=/dev/null 2>/dev/null; ${tm} -p ${dd} bs=65536 count=${NET_MB * 16 - 1} iflag=fullblock of=/dev/null) 2>&1 | grep real`;
const sender = (host: string, port: number, nc = 'nc') => `(head -c ${NET_MB << 20} /dev/zero; sleep 30) | ${nc} ${host} ${port}`;
const rate = (out: string) => NET_MB / Number(/real\s+([\d.]+)/.exec(out)?.[1] ?? NaN);

async function waitFor(fn: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 600 && !(await fn()); i++) await new Promise((r) => setTimeout(r, 100));
}

function killGroup(pid: number | undefined): void {
  try {
    process.kill(-pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

// Native: both ends on the host's loopback.
const nativePort = await freePort('127.0.0.1');
const nativeRecv = spawn('busybox', ['sh', '-c', receiver(nativePort, 'busybox nc', 'busybox dd', 'busybox time')], { stdio: ['ignore', 'pipe', 'ignore'] });
let nativeOut = '';
nativeRecv.stdout.on('data', (c) => (nativeOut += c));
await new Promise((r) => setTimeout(r, 500));
const nativeSend = spawn('busybox', ['sh', '-c', sender('127.0.0.1', nativePort, 'busybox nc')], { stdio: 'ignore', detached: true });
await waitFor(() => /real/.test(nativeOut));
killGroup(nativeSend.pid);
nativeRecv.kill('SIGKILL');
const loopback = rate(nativeOut);

const ipOf = async (daemon: TestDaemon, name: string) => (await daemon.run(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', name])).stdout.trim();
const gatewayOf = async (daemon: TestDaemon, name: string) => (await daemon.run(['inspect', '-f', '{{.NetworkSettings.Gateway}}', name])).stdout.trim();

/** TCP on a daemon's default network: host -> container through a published port, and container -> container. */
async function defaultNetwork(daemon: TestDaemon): Promise<{ toContainer: number; c2c: number; path: string }> {
  const hostPort = await freePort();
  await daemon.run(['run', '-d', '--name', 'sink', '-p', `${hostPort}:5001`, 'busybox', 'sh', '-c', receiver(5001)]);
  await new Promise((r) => setTimeout(r, 1500));
  const hostSend = spawn('busybox', ['sh', '-c', sender('127.0.0.1', hostPort, 'busybox nc')], { stdio: 'ignore', detached: true });
  await waitFor(async () => /real/.test((await daemon.run(['logs', 'sink'])).stdout));
  killGroup(hostSend.pid);
  const toContainer = rate((await daemon.run(['logs', 'sink'])).stdout);
  await daemon.run(['rm', '-f', 'sink']);
  // On a bridge the sink is reached at its own address; on the user-mode network only through the host.
  const c2cPort = await freePort();
  await daemon.run(['run', '-d', '--name', 'sink2', '-p', `${c2cPort}:5001`, 'busybox', 'sh', '-c', receiver(5001)]);
  await new Promise((r) => setTimeout(r, 1500));
  const ip = await ipOf(daemon, 'sink2');
  const bridged = !ip.startsWith('10.0.2.');
  const target = bridged ? `${ip} 5001` : `${await gatewayOf(daemon, 'sink2')} ${c2cPort}`;
  await daemon.run(['run', '-d', '--name', 'source', 'busybox', 'sh', '-c', sender(target.split(' ')[0]!, Number(target.split(' ')[1]))]);
  await waitFor(async () => /real/.test((await daemon.run(['logs', 'sink2'])).stdout));
  const c2c = rate((await daemon.run(['logs', 'sink2'])).stdout);
  await daemon.run(['rm', '-f', 'sink2', 'source']);
  return { toContainer, c2c, path: bridged ? 'default bridge: TAPs on a Linux bridge' : 'user-mode NAT: via the host' };
}

const onDefault = await defaultNetwork(d);
// The user-mode network, for comparison (as root the default network is a bridge unless --bridge none).
let userMode: Awaited<ReturnType<typeof defaultNetwork>> | undefined;
if (process.getuid?.() === 0) {
  const u = await startDaemonWithBusybox(['--bridge', 'none']);
  try {
    userMode = await defaultNetwork(u);
  } finally {
    await u.stop();
  }
}

// container -> container in one pod: the same VM, over its loopback.
await d.run(['pod', 'create', '--name', 'bench']);
await d.run(['run', '-d', '--pod', 'bench', '--name', 'psink', 'busybox', 'sh', '-c', receiver(5001)]);
await new Promise((r) => setTimeout(r, 1000));
await d.run(['run', '-d', '--pod', 'bench', '--name', 'psource', 'busybox', 'sh', '-c', sender('127.0.0.1', 5001)]);
await waitFor(async () => /real/.test((await d.run(['logs', 'psink'])).stdout));
const inPod = rate((await d.run(['logs', 'psink'])).stdout);
await d.run(['pod', 'rm', '-f', 'bench']);

// container -> container on one user-defined bridge network (as root), by name.
let onBridge = NaN;
if (process.getuid?.() === 0) {
  await d.run(['network', 'create', 'benchnet']);
  await d.run(['run', '-d', '--network', 'benchnet', '--name', 'bsink', 'busybox', 'sh', '-c', receiver(5001)]);
  await new Promise((r) => setTimeout(r, 1000));
  await d.run(['run', '-d', '--network', 'benchnet', '--name', 'bsource', 'busybox', 'sh', '-c', sender('bsink', 5001)]);
  await waitFor(async () => /real/.test((await d.run(['logs', 'bsink'])).stdout));
  onBridge = rate((await d.run(['logs', 'bsink'])).stdout);
  await d.run(['rm', '-f', 'bsink', 'bsource']);
  await d.run(['network', 'rm', 'benchnet']);
}
await d.stop();
fs.rmSync(work, { recursive: true, force: true });

/** The file I/O table (ratios against the native run of the same invocation). */
function printFileRows(): void {
  const row = (label: string, key: string) => {
    const n = native[key]!;
    const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? 'n/a' : `${x} ms (${(x / n).toFixed(1)}x)`);
    console.log(`${label.padEnd(34)} native ${String(n).padStart(6)} ms | 9p root ${f(inRoot[key]).padEnd(18)} | block root ${f(inBlock[key]).padEnd(18)} | bind ${f(inBind[key])}`);
  };
  console.log(`file I/O (busybox sh + dd, ${MB} MB sequential, ${FILES} small files; ratios vs native):`);
  row(`sequential write ${MB} MB (fsync)`, 'seqwrite');
  row(`sequential read ${MB} MB`, 'seqread');
  row(`create ${FILES} small files`, 'smallwrite');
  row(`read ${FILES} small files (cold cache)`, 'smallread');
  // The same script with no storage under it, in the block root's VM and on the host:
  // what TCG alone costs, and what the block root adds to it.
  const x = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? 'n/a' : `${(a / b).toFixed(1)}x`);
  console.log('TCG floor (tmpfs in the guest vs /dev/shm on the host; block root vs the guest tmpfs):');
  const floor = (label: string, key: string) =>
    console.log(
      `${label.padEnd(34)} host tmpfs ${String(nativeTmpfs[key]).padStart(5)} ms | guest tmpfs ${String(guestTmpfs[key]).padStart(5)} ms (${x(guestTmpfs[key], nativeTmpfs[key])} of host) | block root ${x(inBlock[key], guestTmpfs[key])} of guest tmpfs`,
    );
  floor(`sequential write ${MB} MB (fsync)`, 'seqwrite');
  floor(`sequential read ${MB} MB`, 'seqread');
  floor(`create ${FILES} small files`, 'smallwrite');
  floor(`read ${FILES} small files`, 'smallread');
  floor(`shell loop, ${FILES} writes to /dev/null`, 'shloop');
}
if (!netOnly) printFileRows();
console.log(`TCP (${NET_MB} MB, timed by the receiver):`);
const mbs = (x: number) => `${x.toFixed(0)} MB/s (${(x / loopback).toFixed(2)}x)`;
console.log(`  host loopback (native)                          ${loopback.toFixed(0)} MB/s`);
console.log(`  default network (${onDefault.path}):`);
console.log(`    host -> container (published port)            ${mbs(onDefault.toContainer)}`);
console.log(`    container -> container                        ${mbs(onDefault.c2c)}`);
if (userMode) {
  console.log(`  user-mode network (--bridge none; ${userMode.path}):`);
  console.log(`    host -> container (published port)            ${mbs(userMode.toContainer)}`);
  console.log(`    container -> container                        ${mbs(userMode.c2c)}`);
  console.log(`  default bridge vs user mode: host -> container ${(onDefault.toContainer / userMode.toContainer).toFixed(1)}x, container -> container ${(onDefault.c2c / userMode.c2c).toFixed(1)}x`);
}
console.log(`  container -> container (one pod)                ${mbs(inPod)}`);
console.log(`  container -> container (user-defined bridge)    ${Number.isNaN(onBridge) ? 'n/a (needs root)' : mbs(onBridge)}`);
