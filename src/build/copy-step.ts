/**
 * COPY and ADD: their flags and arguments, where the sources are (the
 * context, another stage, or an image: `--from`), wildcards, `--chown` by
 * number or by name (from the image's /etc/passwd and /etc/group), Docker's
 * destination rules, ADD's URLs, and the layer (copy-layer.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { invalid } from '../common/errors.js';
import { cleanSource, globRegex, hasWildcards, resolveConfined } from './context.js';
import { writeCopyLayer, type CopySource } from './copy-layer.js';
import { jsonForm, type Instruction } from './dockerfile.js';
import { expandWord, expandWords, type Env } from './shell-words.js';

export interface CopyPlan {
  /** The layer file written, and its content signature (for the cache). */
  layerFile: string;
  signature: string;
  createdBy: string;
}

export interface CopyInputs {
  ins: Instruction;
  env: Env;
  escape: string;
  workdir: string;
  /** Root the sources are read from (context dir, or the --from image's root). */
  sourceRoot: string;
  /** The parent image's unpacked root, when there is one (destination and --chown names). */
  parentRoot: () => Promise<string | undefined>;
  /** Where temporary files (the layer, downloads) go. */
  tmpDir: string;
}

const KNOWN_FLAGS = new Set(['from', 'chown']);

/** Paths under ROOT matching a wildcard pattern, component by component (symlinks not followed). */
function globIn(root: string, pattern: string): string[] {
  let matches = [''];
  for (const part of pattern.split('/')) {
    const next: string[] = [];
    for (const dir of matches) {
      const host = path.join(root, dir);
      if (!hasWildcards(part)) {
        if (fs.existsSync(path.join(host, part)) || isLink(path.join(host, part))) next.push(dir ? `${dir}/${part}` : part);
        continue;
      }
      let names: string[] = [];
      try {
        if (fs.lstatSync(host).isDirectory()) names = fs.readdirSync(host).sort();
      } catch {
        names = [];
      }
      const re = globRegex(part);
      for (const n of names) if (re.test(n)) next.push(dir ? `${dir}/${n}` : n);
    }
    matches = next;
  }
  return matches;
}

function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** `--chown=user[:group]`: numbers, or names looked up in the image's own files. */
export function parseChown(spec: string, root: string | undefined): { uid: number; gid: number } {
  const [user = '', group] = spec.split(':');
  const lookup = (file: string, name: string, what: string): { id: number; gid?: number } => {
    if (/^\d+$/.test(name)) return { id: Number(name) };
    const host = root ? resolveConfined(root, file) : undefined;
    const text = host && fs.existsSync(host) ? fs.readFileSync(host, 'utf8') : '';
    const row = text.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
    if (!row) throw invalid(`unable to convert uid/gid chown string to host mapping: can't find ${what} for ${name}`);
    return { id: Number(row[2]), gid: what === 'uid' ? Number(row[3]) : undefined };
  };
  const u = lookup('etc/passwd', user, 'uid');
  const gid = group !== undefined ? lookup('etc/group', group, 'gid').id : (u.gid ?? u.id);
  return { uid: u.id, gid };
}

/** ADD of a URL: fetched (bounded), saved under the URL's last path component. */
async function fetchUrl(url: string, tmpDir: string): Promise<CopySource> {
  const name = path.posix.basename(new URL(url).pathname) || 'index.html';
  const file = path.join(tmpDir, `url-${Math.random().toString(16).slice(2)}`, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw invalid(`ADD failed: cannot download ${url}: ${cause} (no network? put the file in the build context and COPY it)`);
  }
  if (!res.ok || !res.body) throw invalid(`ADD failed: cannot download ${url}: HTTP ${res.status}`);
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), fs.createWriteStream(file, { mode: 0o600 }));
  fs.chmodSync(file, 0o600);
  return { hostPath: file, name };
}

export async function planCopy(inp: CopyInputs): Promise<CopyPlan> {
  const { ins } = inp;
  for (const f of Object.keys(ins.flags)) {
    if (!KNOWN_FLAGS.has(f)) throw invalid(`${ins.cmd} --${f} is not supported by the classic builder (it needs BuildKit)`);
  }
  const json = jsonForm(ins.args);
  const words = json ? json.map((w) => expandWord(w, inp.env, inp.escape)) : expandWords(ins.args, inp.env, inp.escape);
  if (words.length < 2) throw invalid(`${ins.cmd} requires at least two arguments, but only one was provided. Destination could not be determined.`);
  const rawDest = words[words.length - 1]!;
  const srcs = words.slice(0, -1);
  const joined = rawDest.startsWith('/') ? rawDest : `${inp.workdir}/${rawDest}`;
  const dest = path.posix.normalize(joined).replace(/(.)\/$/, '$1');
  const sources: CopySource[] = [];
  for (const src of srcs) {
    if (/^https?:\/\//i.test(src)) {
      if (ins.cmd !== 'ADD') throw invalid(`source can't be a URL for COPY`);
      sources.push(await fetchUrl(src, inp.tmpDir));
      continue;
    }
    const rel = cleanSource(ins.flags.from ? src.replace(/^\/+/, '') : src);
    const names = hasWildcards(rel) ? globIn(inp.sourceRoot, rel) : [rel];
    for (const name of names) {
      const host = resolveConfined(inp.sourceRoot, name);
      if (!host) throw invalid(`${ins.cmd} failed: file not found in build context or excluded by .dockerignore: stat ${src}: file does not exist`);
      sources.push({ hostPath: host, name: path.posix.basename(name) || path.basename(host) });
    }
    if (!names.length) throw invalid(`${ins.cmd} failed: no source files were specified`);
  }
  if (sources.length > 1 && !rawDest.endsWith('/')) throw invalid(`When using ${ins.cmd} with more than one source file, the destination must be a directory and end with a /`);
  const parentRoot = await inp.parentRoot();
  const destHost = parentRoot ? resolveConfined(parentRoot, dest) : undefined;
  const destExists = !!destHost && fs.existsSync(destHost);
  const destIsDir = /\/$|(^|\/)\.$/.test(rawDest) || (destExists && fs.statSync(destHost!).isDirectory());
  const owner = ins.flags.chown ? parseChown(expandWord(ins.flags.chown, inp.env, inp.escape), parentRoot) : undefined;
  const layerFile = path.join(inp.tmpDir, `layer-${Math.random().toString(16).slice(2)}.tar`);
  const signature = await writeCopyLayer({ sources, dest, destIsDir, destExists, owner, extractArchives: ins.cmd === 'ADD' }, layerFile);
  const from = ins.flags.from ? `--from=${ins.flags.from} ` : '';
  const chown = ins.flags.chown ? `--chown=${ins.flags.chown} ` : '';
  return { layerFile, signature, createdBy: `/bin/sh -c #(nop) ${ins.cmd} ${from}${chown}${srcs.join(' ')} in ${dest} ` };
}
