/**
 * Files of a root the host does not mount (a root on block devices, issue 14),
 * read through the guest: the agent runs its own busybox (START with TOOL,
 * guest/PROTOCOL.md) chrooted into the root, and its stdout is the answer.
 * Paths resolve inside the root as the container would resolve them; the last
 * component is not followed (a symlink is archived as a link, as `cp` does).
 */
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { invalid, notFound } from '../common/errors.js';
import type { GuestProcess, ProcessSpec } from '../agent/process.js';
import type { Sandbox } from './sandbox.js';
import { confinedEntries, packTreeNames, repack } from './tar-repack.js';

/** What `stat` says of a path in the guest's root (unix mode bits, as lstat). */
export interface GuestStat {
  mode: number;
  size: number;
  mtime: Date;
  linkTarget: string;
}

/** At most this much of a tool's stderr is kept for its error message. */
const STDERR_KEEP = 4096;

function toolSpec(root: string, args: string[], tool: ProcessSpec['tool']): ProcessSpec {
  return { root, args, env: [], cwd: '/', user: '', tty: false, stdin: false, tool };
}

/** Runs a tool; its stdout goes to OUT, and the promise settles on its exit (rejecting with its stderr). */
async function runTool(sb: Sandbox, spec: ProcessSpec, out: (b: Buffer) => void): Promise<{ proc: GuestProcess; done: Promise<void> }> {
  const proc = await sb.exec(spec);
  let stderr = '';
  proc.on('stdout', out);
  proc.on('stderr', (b) => {
    if (stderr.length < STDERR_KEEP) stderr += b.toString('utf8');
  });
  const done = new Promise<void>((resolve, reject) =>
    proc.once('exit', (s) => (s.code === 0 ? resolve() : reject(toolError(spec.args[0]!, stderr.trim(), s.code)))),
  );
  proc.release();
  return { proc, done };
}

function toolError(applet: string, stderr: string, code: number): Error {
  if (/Not a directory/.test(stderr)) return invalid(`extraction point is not a directory: ${stderr}`);
  if (/No such file|can't change directory|can't stat/.test(stderr)) return notFound(stderr);
  return new Error(`${applet} in the guest exited with ${code}: ${stderr}`);
}

/** A container path cleaned as Docker cleans it: its directory and (unless it is "/") its last name. */
function splitPath(containerPath: string): { dir: string; name: string; contents?: boolean } {
  if (!containerPath.startsWith('/')) throw invalid(`path must be absolute: ${containerPath}`);
  const clean = path.posix.normalize(containerPath).replace(/\/+$/, '') || '/';
  // "DIR/." (cp's "copy the contents"): the top entry is "." and the client renames it
  if (/\/\.\/*$/.test(containerPath)) return { dir: clean, name: '.', contents: true };
  if (clean === '/') return { dir: '/', name: '.' };
  // "./NAME": a name starting with "-" is not an option of the applet
  return { dir: path.posix.dirname(clean), name: `./${path.posix.basename(clean)}` };
}

/** lstat of PATH in the guest's root ROOT. Not found: a not_found error. */
export async function guestStat(sb: Sandbox, root: string, containerPath: string): Promise<GuestStat> {
  const { dir, name } = splitPath(containerPath);
  const target = path.posix.join(dir, name);
  const chunks: Buffer[] = [];
  const { done } = await runTool(sb, toolSpec(root, ['stat', '-c', '%f %s %Y', '--', target], 'mounts'), (b) => chunks.push(b));
  await done;
  const [modeHex, size, mtime] = Buffer.concat(chunks).toString('utf8').trim().split(' ');
  const mode = parseInt(modeHex ?? '', 16);
  if (!Number.isFinite(mode)) throw new Error(`stat in the guest: unexpected output for ${containerPath}`);
  let linkTarget = '';
  if ((mode & 0o170000) === 0o120000) {
    const link: Buffer[] = [];
    await (await runTool(sb, toolSpec(root, ['readlink', '--', target], 'mounts'), (b) => link.push(b))).done;
    linkTarget = Buffer.concat(link).toString('utf8').replace(/\n$/, '');
  }
  return { mode, size: Number(size), mtime: new Date(Number(mtime) * 1000), linkTarget };
}

/**
 * A tar stream of PATH in the guest's root: entries named as `packTree` names
 * them on the host (PATH's last name as the top entry; for "/", its contents
 * with no entry for the root itself). `ownFs`: the root's own filesystem only
 * (`export`). The stream fails if the guest's tar does.
 */
export async function guestTar(sb: Sandbox, root: string, containerPath: string, opts: { ownFs?: boolean } = {}): Promise<Readable> {
  const { dir, name, contents } = splitPath(containerPath);
  const raw = await toolOutput(sb, toolSpec(root, ['tar', '-cf', '-', '-C', dir, name], opts.ownFs ? 'own-fs' : 'mounts'));
  // busybox's "./" names are what packTree gives for "DIR/." already
  return contents ? raw.out : stopWith(repack(raw.out, packTreeNames), raw.proc);
}

/**
 * The writable layer of a root on block devices, as the guest's tar writes
 * it: the overlay's upper directory with overlay's own markers (a whiteout is
 * a 0:0 character device, or a hard link to one), names as busybox writes
 * them ("./etc/passwd"). Untrusted: see src/engine/disk-layer.ts.
 */
export async function guestUpperTar(sb: Sandbox, root: string): Promise<Readable> {
  return (await toolOutput(sb, toolSpec(root, ['tar', '-cf', '-', '.'], 'upper'))).out;
}

/** The opaque directories of that layer ("a/b", relative to the upper directory). */
export async function guestOpaqueDirs(sb: Sandbox, root: string): Promise<Set<string>> {
  const { out } = await toolOutput(sb, toolSpec(root, ['opaque'], 'opaque'));
  const dirs = new Set<string>();
  let rest = Buffer.alloc(0);
  for await (const chunk of out) {
    rest = Buffer.concat([rest, chunk as Buffer]);
    for (let nul = rest.indexOf(0); nul >= 0; nul = rest.indexOf(0)) {
      dirs.add(path.posix.normalize(rest.subarray(0, nul).toString('utf8')));
      rest = rest.subarray(nul + 1);
    }
  }
  return dirs;
}

/**
 * A tool's stdout as a stream (with backpressure on the guest), failing if the
 * tool does; a reader that goes away stops the tool (signals reach a tool: it
 * is no PID 1).
 */
async function toolOutput(sb: Sandbox, spec: ProcessSpec): Promise<{ out: PassThrough; proc: GuestProcess }> {
  const out = new PassThrough();
  const { proc, done } = await runTool(sb, spec, (b) => {
    if (!out.write(b)) holdUntilDrained(sb, out);
  });
  done.then(
    () => out.end(),
    (err: Error) => out.destroy(err),
  );
  stopWith(out, proc);
  return { out, proc };
}

function stopWith<S extends Readable>(stream: S, proc: GuestProcess): S {
  stream.once('close', () => {
    if (!proc.exited) proc.signal(9);
  });
  return stream;
}

/** How long a reader may leave the guest's output unread before it is cut off. */
const STALLED_READER_MS = 60_000;

/**
 * Backpressure on a tool's output: the VM's agent channel is not read while
 * STREAM's buffer is full (the guest's tar blocks; the host buffers no more).
 * That also holds the container's other output, so a reader that stops reading
 * for STALLED_READER_MS is cut off rather than left to stall the container.
 */
function holdUntilDrained(sb: Sandbox, stream: PassThrough): void {
  sb.agent.hold(stream, true);
  const stalled = setTimeout(() => stream.destroy(new Error('the reader stopped reading')), STALLED_READER_MS);
  const release = () => {
    clearTimeout(stalled);
    sb.agent.hold(stream, false);
  };
  stream.once('drain', release);
  stream.once('close', release);
}

/**
 * `cp` in: extracts a client's ARCHIVE into directory DIR of the guest's root
 * (which must exist). Entries stay under DIR (confinedEntries); owners are the
 * archive's (numeric) with COPYUIDGID, else root's, as Docker's `cp -a`.
 */
export async function guestExtract(sb: Sandbox, root: string, dir: string, archive: Readable, opts: { copyUidGid: boolean }): Promise<void> {
  if (!dir.startsWith('/')) throw invalid(`path must be absolute: ${dir}`);
  const args = ['tar', '-xf', '-', '-C', path.posix.normalize(dir), opts.copyUidGid ? '--numeric-owner' : '-o'];
  const { proc, done } = await runTool(sb, { ...toolSpec(root, args, 'mounts'), stdin: true }, () => undefined);
  // A refused archive stops the re-packing, which destroys its input: that is this
  // copy, not the client's request, whose rest is drained so the client reads the answer.
  const input = archive.pipe(new PassThrough());
  try {
    // STDIN frames follow the guest's window: the archive is read as fast as the guest's tar takes it
    for await (const chunk of repack(input, confinedEntries())) {
      if (proc.exited) break; // it failed (a missing DIR, say): its exit says why
      await proc.write(chunk as Buffer);
    }
    proc.endStdin();
  } catch (err) {
    archive.unpipe(input);
    archive.resume();
    if (!proc.exited) proc.signal(9);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
}
