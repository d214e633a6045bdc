/**
 * Volumes, bind mounts, tmpfs and read-only roots of a container.
 *
 * Bind mounts and named volumes are mounted on the host, onto the container's
 * merged overlay root, before its VM starts: the VM sees them through its one 9p
 * root share (QEMU's `local` backend with `multidevs=remap` crosses the mount
 * points), so the device layout, and thus instant clones, are unchanged and no
 * data is copied. The mount point is resolved inside the root as if the root were
 * "/" (a symlink in the image cannot redirect it out); the guest resolves every
 * path, symlinks included, inside its own share, so a symlink placed in a bind
 * mounted directory can never reach the host's files.
 *
 * tmpfs mounts are made by the agent inside the guest (host-side tmpfs would be a
 * 9p directory to the guest); the host only creates their mount points. A
 * read-only root is the overlay remounted read-only on the host for the run.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mountsUnder } from '../common/mounts.js';
import { internal, invalid } from '../common/errors.js';
import { entryComponents, resolveInRoot } from '../images/layer.js';
import { HOST_SIDE_FLAGS } from '../images/rootfs.js';
import { VOLUME_NAME_RE, type VolumeStore } from './volumes.js';

export interface MountPoint {
  Type: 'bind' | 'volume' | 'tmpfs';
  /** Volume name (volumes only). */
  Name?: string;
  Source: string;
  Destination: string;
  Driver?: string;
  Mode: string;
  RW: boolean;
  Propagation: string;
  /** tmpfs options as given (`size=64m,mode=1777`). */
  TmpfsOptions?: string;
}

/** `HostConfig.Mounts` entries (the `--mount` flag). */
export interface MountRequest {
  Type?: string;
  Source?: string;
  Target?: string;
  ReadOnly?: boolean;
  TmpfsOptions?: { SizeBytes?: number; Mode?: number };
}

export interface StorageRequest {
  Binds?: string[];
  Mounts?: MountRequest[];
  Tmpfs?: Record<string, string>;
}

function checkDestination(dst: string): string {
  if (!dst.startsWith('/')) throw invalid(`invalid mount config for type "bind": invalid mount path: '${dst}' mount path must be absolute`);
  const norm = path.posix.normalize(dst).replace(/\/+$/, '');
  if (norm === '' || norm === '/') throw invalid(`invalid mount config: destination can't be '/'`);
  if (norm.includes(':') || norm.includes('\0')) throw invalid(`invalid mount path: '${dst}'`);
  return norm;
}

/**
 * Turns Binds, Mounts and Tmpfs into the container's mount points, creating named
 * (and anonymous) volumes and missing bind sources, as dockerd does at create time.
 */
export function resolveMounts(req: StorageRequest, volumes: VolumeStore): MountPoint[] {
  const out: MountPoint[] = [];
  const add = (m: MountPoint) => {
    if (out.some((o) => o.Destination === m.Destination)) throw invalid(`Duplicate mount point: ${m.Destination}`);
    out.push(m);
  };
  const volume = (name: string | undefined, dst: string, rw: boolean, mode: string): MountPoint => {
    const meta = name ? volumes.create({ name }) : volumes.create({ anonymous: true });
    return { Type: 'volume', Name: meta.Name, Source: meta.Mountpoint, Destination: dst, Driver: 'local', Mode: mode, RW: rw, Propagation: '' };
  };
  const bind = (src: string, dst: string, rw: boolean, mode: string): MountPoint => {
    const source = path.resolve(src);
    if (!fs.existsSync(source)) fs.mkdirSync(source, { recursive: true, mode: 0o755 });
    return { Type: 'bind', Source: source, Destination: dst, Mode: mode, RW: rw, Propagation: 'rprivate' };
  };
  for (const spec of req.Binds ?? []) {
    const parts = spec.split(':');
    if (parts.length === 1) {
      add(volume(undefined, checkDestination(parts[0]!), true, ''));
      continue;
    }
    if (parts.length > 3 || !parts[0] || !parts[1]) throw invalid(`invalid volume specification: '${spec}'`);
    const [src, dstRaw, mode = ''] = parts as [string, string, string?];
    const modes = mode ? mode.split(',') : [];
    for (const m of modes) if (!['ro', 'rw', 'z', 'Z', 'nocopy', 'rprivate', 'private'].includes(m)) throw invalid(`invalid mode: ${m}`);
    const rw = !modes.includes('ro');
    const dst = checkDestination(dstRaw);
    if (src.startsWith('/')) add(bind(src, dst, rw, mode));
    else if (VOLUME_NAME_RE.test(src)) add(volume(src, dst, rw, mode || 'z'));
    else throw invalid(`create ${src}: "${src}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
  }
  for (const m of req.Mounts ?? []) {
    const dst = checkDestination(m.Target ?? '');
    const type = m.Type ?? 'volume';
    if (type === 'bind') {
      if (!m.Source?.startsWith('/')) throw invalid('invalid mount config for type "bind": invalid mount path: source must be absolute');
      if (!fs.existsSync(m.Source)) throw invalid(`invalid mount config for type "bind": bind source path does not exist: ${m.Source}`);
      add({ ...bind(m.Source, dst, !m.ReadOnly, ''), Mode: '' });
    } else if (type === 'volume') {
      add(volume(m.Source || undefined, dst, !m.ReadOnly, ''));
    } else if (type === 'tmpfs') {
      const opts: string[] = [];
      if (m.TmpfsOptions?.SizeBytes) opts.push(`size=${m.TmpfsOptions.SizeBytes}`);
      if (m.TmpfsOptions?.Mode) opts.push(`mode=${m.TmpfsOptions.Mode.toString(8)}`);
      if (m.ReadOnly) opts.push('ro');
      add({ Type: 'tmpfs', Source: '', Destination: dst, Mode: '', RW: !m.ReadOnly, Propagation: '', TmpfsOptions: opts.join(',') });
    } else {
      throw invalid(`mount type "${type}" is not supported by hyperbox (bind, volume and tmpfs are)`);
    }
  }
  for (const [dst, opts] of Object.entries(req.Tmpfs ?? {})) {
    if (/[^a-zA-Z0-9=,._-]/.test(opts)) throw invalid(`invalid tmpfs options: ${opts}`);
    add({ Type: 'tmpfs', Source: '', Destination: checkDestination(dst), Mode: '', RW: !opts.split(',').includes('ro'), Propagation: '', TmpfsOptions: opts });
  }
  return out;
}

/**
 * `--volumes-from NAME[:ro|:rw]`: the volumes and bind mounts of other
 * containers (MOUNTS_OF gives them), at the same paths, read-only or writable
 * as asked, else as they are there; paths this container mounts itself win.
 * tmpfs mounts are not shared (as on Docker).
 */
export function inheritedMounts(specs: string[] | undefined, mountsOf: (name: string) => MountPoint[], own: MountPoint[]): MountPoint[] {
  const out: MountPoint[] = [];
  for (const spec of specs ?? []) {
    const [name, mode, extra] = spec.split(':');
    if (!name || extra !== undefined || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) throw invalid(`invalid volumes-from specification: '${spec}'`);
    for (const m of mountsOf(name)) {
      if (m.Type === 'tmpfs' || [...own, ...out].some((o) => o.Destination === m.Destination)) continue;
      out.push({ ...m, RW: mode ? mode === 'rw' : m.RW, Mode: mode ?? m.Mode });
    }
  }
  return out;
}

/** Runs a mount-type command; its stderr becomes the error. */
export function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw internal(`${cmd} ${args.join(' ')}: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
}


/** Unmounts everything mounted under a container root (volumes, binds). */
export function unmountVolumes(root: string): void {
  for (const m of mountsUnder(root)) {
    try {
      execFileSync('umount', [m], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        /* already gone (a parent's lazy unmount took it) */
      }
    }
  }
}

function isReadOnlyMount(dir: string): boolean {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const line = text.split('\n').find((l) => l.split(' ')[4] === dir);
  return !!line && line.split(' ')[5]!.split(',').includes('ro');
}

/** Puts the overlay root back to read-write (after a `--read-only` run). */
export function restoreRootWritable(root: string): void {
  try {
    if (isReadOnlyMount(root)) execFileSync('mount', ['-o', `remount,rw,${HOST_SIDE_FLAGS}`, root], { stdio: 'ignore' });
  } catch {
    /* not mounted */
  }
}

/** Where a destination lives inside the root: every component a real directory. */
function mountTarget(root: string, dst: string, isFile: boolean): string {
  const comps = entryComponents(dst);
  if (!isFile) return resolveInRoot(root, comps, true);
  const parent = resolveInRoot(root, comps.slice(0, -1), true);
  const target = path.join(parent, comps[comps.length - 1]!);
  const st = fs.lstatSync(target, { throwIfNoEntry: false });
  if (!st) fs.closeSync(fs.openSync(target, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW, 0o644));
  else if (!st.isFile()) throw invalid(`cannot mount file ${dst}: the container has something else there`);
  return target;
}

/**
 * Binds SOURCE onto TARGET, a path resolved inside ROOT, without a window in
 * which the guest could swap TARGET (or a directory above it) for a symlink
 * out of the root: TARGET is opened without following a final symlink, the
 * opened object is checked to lie inside ROOT, and the bind goes onto exactly
 * that object through /proc/self/fd (mount(8) told not to resolve the path).
 */
function bindInRoot(root: string, source: string, target: string, flags: string): void {
  const realRoot = fs.realpathSync(root);
  // The object at TARGET now, checked to be inside the root; opening it again after the
  // bind gives the new mount's root (a magic link does not cross the mount on top).
  const openChecked = () => {
    const dir = fs.lstatSync(target).isDirectory();
    const fd = fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | (dir ? fs.constants.O_DIRECTORY : 0));
    const fdPath = `/proc/${process.pid}/fd/${fd}`;
    const actual = fs.readlinkSync(fdPath);
    if (actual !== realRoot && !actual.startsWith(`${realRoot}/`)) {
      fs.closeSync(fd);
      throw invalid(`mount point ${target} leads out of the container root`);
    }
    return { fd, fdPath };
  };
  const under = openChecked();
  try {
    run('mount', ['--no-canonicalize', '--bind', source, under.fdPath]);
  } finally {
    fs.closeSync(under.fd);
  }
  const bound = openChecked();
  try {
    run('mount', ['--no-canonicalize', '-o', `remount,bind,${flags}`, bound.fdPath]);
  } finally {
    fs.closeSync(bound.fd);
  }
}

/** Docker fills an empty volume with what the image has at its mount point (ROOT: a tree with the image's files). */
export function seedVolume(root: string, m: MountPoint): void {
  try {
    if (fs.readdirSync(m.Source).length) return;
    const inImage = resolveInRoot(root, entryComponents(m.Destination), false);
    if (fs.readdirSync(inImage).length === 0) return;
    run('cp', ['-a', '--no-dereference', `${inImage}/.`, m.Source]);
  } catch {
    /* nothing at that path in the image */
  }
}

/**
 * Mounts a container's binds and volumes onto its merged root (host side),
 * prepares tmpfs mount points, and makes the root read-only if asked. Returns the
 * tmpfs specs for the agent ("relative/path[:opts]", resolved inside the root).
 * Idempotent: what a previous run left mounted is unmounted first.
 */
export function mountVolumes(root: string, mounts: MountPoint[], readonlyRoot: boolean): string[] {
  unmountVolumes(root);
  restoreRootWritable(root);
  const tmpfs: string[] = [];
  // Parents before children (/a before /a/b), as Docker orders them.
  const sorted = [...mounts].sort((a, b) => a.Destination.split('/').length - b.Destination.split('/').length);
  try {
    for (const m of sorted) {
      if (m.Type === 'tmpfs') {
        const target = mountTarget(root, m.Destination, false);
        tmpfs.push(`/${path.relative(root, target)}${m.TmpfsOptions ? `:${m.TmpfsOptions}` : ''}`);
        continue;
      }
      if (m.Type === 'volume') seedVolume(root, m);
      const srcStat = fs.statSync(m.Source, { throwIfNoEntry: false });
      if (!srcStat) throw invalid(`bind source path does not exist: ${m.Source}`);
      const target = mountTarget(root, m.Destination, !srcStat.isDirectory());
      // This bind's own flags (the source mount keeps its own): inert setuid files and devices, and ro if asked.
      bindInRoot(root, m.Source, target, `${HOST_SIDE_FLAGS}${m.RW ? '' : ',ro'}`);
    }
    if (readonlyRoot) {
      // What the agent mounts or binds over must exist before the root turns read-only.
      for (const d of ['proc', 'sys', 'dev', 'etc']) resolveInRoot(root, [d], true);
      const etc = path.join(root, 'etc');
      if (!fs.lstatSync(etc).isSymbolicLink()) {
        for (const f of ['hostname', 'hosts', 'resolv.conf']) {
          const p = path.join(etc, f);
          if (!fs.lstatSync(p, { throwIfNoEntry: false })) fs.writeFileSync(p, '', { flag: 'wx' });
        }
      }
      run('mount', ['-o', `remount,ro,${HOST_SIDE_FLAGS}`, root]);
    }
  } catch (err) {
    unmountVolumes(root);
    restoreRootWritable(root);
    throw err;
  }
  return tmpfs;
}

export { mountsUnder };
