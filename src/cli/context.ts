/**
 * What every command shares: the API client (and starting the default daemon on
 * demand), the "act" wrapper that turns a command's result into an exit status,
 * and small output helpers that mimic the docker CLI.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { defaultDataRoot } from '../common/paths.js';
import { repoRoot } from '../common/paths.js';
import { ApiClient, ApiError, ConnectError } from './client.js';
import { renderTemplate } from './format.js';
import { ExitError } from './exit-error.js';

export type Act = (fn: (...args: never[]) => Promise<number>) => (...args: unknown[]) => Promise<void>;

let client: ApiClient | undefined;
let autostart = false;

export function useClient(c: ApiClient, startOnDemand: boolean): void {
  client = c;
  autostart = startOnDemand;
}

export function apiClient(): ApiClient {
  if (!client) throw new Error('no API client configured');
  return client;
}

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
  // Say why right here: the log may be on a machine (CI) nobody can look at later.
  const logFile = path.join(dataRoot, 'hyperboxd.log');
  let tail = '';
  try {
    tail = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-15).map((l) => `  ${l}`).join('\n');
  } catch {
    /* no log at all */
  }
  const why = exited ? 'it exited' : 'it did not answer within 60 s';
  throw new ExitError(125, `hyperboxd did not start (${why}); last lines of ${logFile}:\n${tail}`);
}

/** Runs a call against the daemon, starting the default daemon if it is not up. */
async function withDaemon<T>(call: (c: ApiClient) => Promise<T>): Promise<T> {
  try {
    return await call(client!);
  } catch (err) {
    if (err instanceof ConnectError && autostart) {
      autostart = false;
      await startDaemon(client!);
      return call(client!);
    }
    throw err;
  }
}

export function api<T = unknown>(method: string, p: string, opts: Parameters<ApiClient['request']>[2] = {}): Promise<T> {
  return withDaemon((c) => c.request<T>(method, p, opts));
}

/** A request whose response body is read as a stream (logs, events, save...). */
export function stream(method: string, p: string, opts: Parameters<ApiClient['request']>[2] = {}): ReturnType<ApiClient['stream']> {
  return withDaemon((c) => c.stream(method, p, opts));
}

/** `--label key=value` flags (repeated) as Docker's Labels object. */
export function parseLabels(flags: string[] | undefined): Record<string, string> {
  return Object.fromEntries((flags ?? []).map((l) => [l.split('=')[0]!, l.split('=').slice(1).join('=')]));
}

export function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

/** `--filter key=value` flags as Docker's `filters` query parameter ({"key":["value",...]}). */
export function filtersParam(flags: string[] = []): string | undefined {
  if (!flags.length) return undefined;
  const filters: Record<string, string[]> = {};
  for (const f of flags) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new ExitError(125, `bad format of filter (expected name=value): ${f}`);
    (filters[f.slice(0, eq)] ??= []).push(f.slice(eq + 1));
  }
  return JSON.stringify(filters);
}
export function ago(unixSeconds: number): string {
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 60) return `${Math.round(s)} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export async function forEach(ids: string[], fn: (id: string) => Promise<void>): Promise<number> {
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

export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n < 10 && i ? n.toFixed(2) : n < 100 && i ? n.toFixed(1) : Math.round(n)}${units[i]}`;
}

/**
 * `inspect` of several objects, Docker's way: what was found is printed (JSON
 * array, or one template line each), what was not is reported, status 1.
 */
export async function inspectEach(names: string[], pathOf: (name: string) => string, format: string | undefined): Promise<number> {
  const out: unknown[] = [];
  let status = 0;
  for (const n of names) {
    try {
      out.push(await api('GET', pathOf(encodeURIComponent(n))));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      process.stderr.write(`Error: ${err.message}\n`);
      status = 1;
    }
  }
  if (format) process.stdout.write(out.map((o) => renderTemplate(format, o) + '\n').join(''));
  else process.stdout.write(JSON.stringify(out, null, 4) + '\n');
  return status;
}
