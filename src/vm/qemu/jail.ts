/**
 * The jail every QEMU runs in as root (after Firecracker's jailer): its own
 * mount namespace whose root holds only what that VM needs (the QEMU binary and
 * its libraries read-only, its kernel and initrd, its run directory, its shares
 * and RAM file, a minimal /dev), its own PID, IPC, UTS and cgroup namespaces, a
 * cgroup bounding its memory, tasks and CPU, no_new_privs, a cleared
 * environment, and a capability set cut to what its devices need. QEMU's own
 * seccomp filter (`-sandbox`, see args.ts) comes on top.
 *
 * bubblewrap builds the namespace (pivot_root into a fresh tmpfs); it stays as
 * a small monitor that exits with QEMU's status. QEMU is killed directly.
 * Mount propagation: a share is made a shared mount before QEMU starts, so
 * roots bound into it later (pod members, a warm-pool VM's root) reach the
 * jail's copy, which is a slave of it; nothing the jail mounts flows back.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { VmSpec } from './args.js';
import { createVmCgroup, removeVmCgroup } from './cgroup.js';

/**
 * Capabilities QEMU keeps: what 9p passthrough needs to give the guest root's
 * view of its files (chown, permission and owner overrides, setuid bits kept on
 * chown, device nodes, file capabilities) and attaching to its TAP. Everything
 * else (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, ...) is dropped, from
 * the bounding set too. QEMU stays uid 0 because 9p passthrough stores the
 * guest's owners as real host owners.
 */
export const QEMU_CAPABILITIES = ['chown', 'dac_override', 'fowner', 'fsetid', 'mknod', 'setfcap', 'net_admin'];

const find = (...candidates: string[]) => candidates.find((p) => fs.existsSync(p));
const BWRAP = find('/usr/bin/bwrap', '/bin/bwrap');
const SETPRIV = find('/usr/bin/setpriv', '/bin/setpriv');
const SH = '/bin/sh';
/** Joins the given cgroups (their cgroup.procs files, up to `--`), then execs the rest: QEMU starts inside. */
const JOIN_CGROUPS = 'for f do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"';

/** Top-level entries of a usr-merged or classic root the jail mirrors read-only. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** What jailing a QEMU needs on this host; the reason it cannot, otherwise. */
export function jailUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: QEMU runs as the daemon user, unjailed';
  if (!BWRAP) return 'bubblewrap (bwrap) is not installed: QEMU runs without its own namespaces (apt-get install bubblewrap)';
  if (!SETPRIV) return 'setpriv is not installed: QEMU keeps a full bounding set';
  return undefined;
}

/** Absolute path of a command name, as exec would find it. */
function resolveBinary(bin: string): string {
  if (bin.includes('/')) return path.resolve(bin);
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.realpathSync(p);
    } catch {
      /* next */
    }
  }
  return bin;
}

/** The bubblewrap arguments that build SPEC's jail (pure apart from looking at the system dirs). */
export function jailArgs(spec: VmSpec, qemu: string): string[] {
  // No --die-with-parent: it would tie QEMU to the daemon too (bwrap's parent), and VMs outlive daemon restarts.
  const args = ['--new-session', '--unshare-pid', '--as-pid-1', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  args.push('--clearenv', '--setenv', 'PATH', '/usr/bin:/bin', '--chdir', '/');
  for (const dir of SYSTEM_DIRS) {
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(dir), dir);
    else if (st?.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  args.push('--ro-bind-try', '/etc/ld.so.cache', '/etc/ld.so.cache');
  args.push('--dev', '/dev', '--proc', '/proc');
  if (spec.net?.tap) args.push('--dev-bind', '/dev/net/tun', '/dev/net/tun');
  if (spec.shape.accel === 'kvm') args.push('--dev-bind', '/dev/kvm', '/dev/kvm');
  if (!qemu.startsWith('/usr/')) args.push('--ro-bind', qemu, qemu);
  // An operator's extra paths (a QEMU wrapper's state, a debugging aid), read-write.
  for (const p of (process.env.HYPERBOX_JAIL_BIND ?? '').split(':').filter(Boolean)) args.push('--bind', path.resolve(p), path.resolve(p));
  for (const f of new Set([spec.shape.assets.kernel, spec.shape.assets.initrd])) args.push('--ro-bind', path.resolve(f), path.resolve(f));
  args.push('--bind', path.resolve(spec.runDir), path.resolve(spec.runDir));
  if (spec.readOnlyDir) args.push('--ro-bind', path.resolve(spec.readOnlyDir), path.resolve(spec.readOnlyDir));
  for (const share of spec.sharePaths) args.push('--bind', path.resolve(share), path.resolve(share));
  if (spec.disks) {
    args.push('--ro-bind', path.resolve(spec.disks.lower), path.resolve(spec.disks.lower));
    args.push('--bind', path.resolve(spec.disks.upper), path.resolve(spec.disks.upper));
  }
  if (spec.memoryFile) {
    const dir = path.dirname(path.resolve(spec.memoryFile.path));
    args.push('--bind', dir, dir);
  }
  args.push('--cap-drop', 'ALL');
  // CAP_SETPCAP only so setpriv can cut the bounding set; it is dropped at QEMU's exec.
  for (const cap of [...QEMU_CAPABILITIES, 'setpcap']) args.push('--cap-add', `CAP_${cap.toUpperCase()}`);
  return args;
}

/**
 * What one launch set up on the host, to be undone when that VM is gone: its
 * shares' self-binds and its cgroup. Recorded in memory by the VM and in its run
 * directory (for a VM adopted after a daemon restart). A VM launched again in the
 * same run directory (a cold boot after a failed clone) takes the record over,
 * so the first VM's late release cannot undo what the second one uses.
 */
export interface JailRecord {
  launch: string;
  selfBound: string[];
  cgroup?: string;
}

/** The file in a run directory holding the JailRecord of the VM launched there last. */
const RECORD_FILE = 'jail.json';

function readRecord(runDir: string): JailRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(runDir, RECORD_FILE), 'utf8')) as JailRecord;
  } catch {
    return undefined;
  }
}

/**
 * The command that starts QEMU (argv QEMU_ARGV) for SPEC: jailed and in its
 * cgroup as root, or as given where the jail is unavailable; and the record of
 * what the jail set up on the host.
 */
export function jailedCommand(spec: VmSpec, qemuArgv: string[]): { cmd: string[]; record?: JailRecord } {
  if (jailUnavailable()) return { cmd: qemuArgv };
  const qemu = resolveBinary(qemuArgv[0]!);
  const record: JailRecord = { launch: randomBytes(6).toString('hex'), selfBound: makeSharesShared(spec) };
  const save = () => fs.writeFileSync(path.join(spec.runDir, RECORD_FILE), JSON.stringify(record));
  let group: ReturnType<typeof createVmCgroup>;
  try {
    save();
    group = createVmCgroup(spec.runDir, spec.shape, record.launch);
    record.cgroup = group?.name;
    save();
  } catch (err) {
    releaseJail(spec.runDir, record);
    throw err;
  }
  const setpriv = [SETPRIV!, `--bounding-set=-all,${QEMU_CAPABILITIES.map((c) => `+${c}`).join(',')}`, '--inh-caps=-all', '--ambient-caps=-all', '--'];
  // QEMU keeps the name it was given (`ps` shows qemu-system-...); the jail has /usr/bin on its PATH.
  const cmd = [BWRAP!, ...jailArgs(spec, qemu), '--', ...setpriv, ...qemuArgv];
  return { cmd: group ? [SH, '-c', JOIN_CGROUPS, 'hyperbox-jail', ...group.procs, '--', ...cmd] : cmd, record };
}

/** Mount points of this mount namespace. */
function mountPoints(): Set<string> {
  const points = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const p = line.split(' ')[4];
    if (p) points.add(p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return points;
}

/**
 * Makes every share a shared mount (binding it onto itself first when it is a
 * plain directory: recursively, so what is already bound under it, such as a
 * block root's binds, stays visible through it). Returns the self-bound shares,
 * those an earlier launch in this run directory self-bound included.
 */
function makeSharesShared(spec: VmSpec): string[] {
  if (spec.sharePaths.length === 0) return [];
  const points = mountPoints();
  const earlier = new Set(readRecord(spec.runDir)?.selfBound ?? []);
  const selfBound: string[] = [];
  for (const share of spec.sharePaths.map((s) => path.resolve(s))) {
    if (points.has(share)) {
      execFileSync('mount', ['--make-shared', share], { stdio: 'pipe' });
      if (earlier.has(share)) selfBound.push(share);
    } else {
      execFileSync('mount', ['--no-canonicalize', '--rbind', '--make-shared', '-o', 'nosuid,nodev', share, share], { stdio: 'pipe' });
      selfBound.push(share);
    }
  }
  return selfBound;
}

/**
 * Undoes the host side of a jail once its QEMU is gone: the cgroup of that
 * launch, and the shares' self-binds (with whatever was bound under them)
 * unless a later launch in RUNDIR took them over. RECORD: the launch's own
 * (undefined: the one recorded in RUNDIR). Safe to call more than once; a cgroup
 * whose last task is still being reaped is retried.
 */
export function releaseJail(runDir: string, record = readRecord(runDir)): void {
  if (!record) return;
  const current = readRecord(runDir);
  if (current?.launch === record.launch) {
    const points = mountPoints();
    for (const share of record.selfBound) {
      if (!points.has(share)) continue;
      try {
        execFileSync('umount', ['--recursive', share], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['--lazy', share], { stdio: 'pipe' });
      }
    }
    fs.rmSync(path.join(runDir, RECORD_FILE), { force: true });
  }
  const group = record.cgroup;
  if (!group) return;
  let tries = 0;
  const removeGroup = () => {
    if (!removeVmCgroup(group) && ++tries < 20) setTimeout(removeGroup, 100).unref();
  };
  removeGroup();
}
