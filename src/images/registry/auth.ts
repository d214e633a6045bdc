/**
 * Registry credentials and challenges: Docker's X-Registry-Auth header (what
 * the docker CLI and hyperbox send), and WWW-Authenticate as registries answer
 * (`Basic realm=...` or `Bearer realm=...,service=...,scope=...`).
 */
import { invalid } from '../../common/errors.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** A refresh token from a previous login, sent instead of a password. */
  identitytoken?: string;
  serveraddress?: string;
}

export function decodeRegistryAuth(header: string | undefined): Credentials | undefined {
  if (!header) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
  } catch {
    throw invalid('X-Registry-Auth is not base64-encoded JSON');
  }
  if (!parsed || typeof parsed !== 'object') return undefined;
  const c = parsed as Record<string, unknown>;
  const str = (k: string) => (typeof c[k] === 'string' && c[k] !== '' ? (c[k] as string) : undefined);
  const creds = { username: str('username'), password: str('password'), identitytoken: str('identitytoken'), serveraddress: str('serveraddress') };
  return creds.username || creds.identitytoken ? creds : undefined;
}

export function encodeRegistryAuth(c: Credentials): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="https://x/token",service="reg",scope="repository:a:pull"`. */
export function parseChallenge(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!))) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}
