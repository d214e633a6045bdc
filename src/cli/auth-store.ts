/**
 * Registry credentials kept by the CLI, as the docker CLI keeps them in
 * ~/.docker/config.json: $XDG_CONFIG_HOME/hyperbox/auth.json, mode 0600 in a
 * 0700 directory, rewritten atomically. They travel to the daemon only in the
 * X-Registry-Auth header of the request that needs them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface AuthFile {
  auths: Record<string, { auth: string }>;
}

export function authFilePath(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'hyperbox', 'auth.json');
}

function read(): AuthFile {
  try {
    const parsed = JSON.parse(fs.readFileSync(authFilePath(), 'utf8')) as AuthFile;
    return { auths: parsed.auths ?? {} };
  } catch {
    return { auths: {} };
  }
}

function write(data: AuthFile): void {
  const file = authFilePath();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(data, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function saveCredentials(server: string, username: string, password: string): void {
  const data = read();
  data.auths[server] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  write(data);
}

export function removeCredentials(server: string): boolean {
  const data = read();
  if (!(server in data.auths)) return false;
  delete data.auths[server];
  write(data);
  return true;
}

export function credentialsFor(server: string): { username: string; password: string } | undefined {
  const entry = read().auths[server];
  if (!entry) return undefined;
  const text = Buffer.from(entry.auth, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? undefined : { username: text.slice(0, i), password: text.slice(i + 1) };
}

/** Every stored credential as an X-Registry-Config header (what the docker CLI sends with a build). */
export function registryConfigHeader(): string {
  return Buffer.from(JSON.stringify(read().auths)).toString('base64url');
}
