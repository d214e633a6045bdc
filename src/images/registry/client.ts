/**
 * An OCI distribution client for one repository: HTTP(S) with the registry's
 * auth dance (anonymous, Basic, Bearer tokens fetched from the realm, cached
 * per scope), retries with back-off on 5xx and connection errors, and plain
 * HTTP only for insecure registries (loopback ones are, as in Docker).
 */
import { internal, notFound, unauthorized } from '../../common/errors.js';
import type { ImageRef } from '../reference.js';
import { parseChallenge, type Credentials } from './auth.js';

export interface RegistryOptions {
  credentials?: Credentials;
  /** Registries reachable over plain HTTP (host or host:port). */
  insecure?: string[];
}

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/;

export function isInsecure(domain: string, insecure: string[] = []): boolean {
  return LOOPBACK.test(domain) || insecure.includes(domain) || insecure.includes(domain.replace(/:\d+$/, ''));
}

/** docker.io is served by registry-1.docker.io. */
function apiHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

export class RegistryClient {
  readonly base: string;
  private tokens = new Map<string, string>();
  private basic = false;

  constructor(
    readonly ref: Pick<ImageRef, 'domain' | 'path'>,
    private readonly opts: RegistryOptions = {},
  ) {
    this.base = `${isInsecure(ref.domain, opts.insecure) ? 'http' : 'https'}://${apiHost(ref.domain)}`;
  }

  /** Repository-relative request: path "manifests/latest" -> /v2/<repo>/manifests/latest. */
  repo(method: string, sub: string, init: { headers?: Record<string, string>; body?: Buffer | ReadableStream | null; scope?: 'pull' | 'push'; extraScopes?: string[] } = {}): Promise<Response> {
    return this.request(method, `/v2/${this.ref.path}/${sub}`, init);
  }

  async request(method: string, pathOrUrl: string, init: { headers?: Record<string, string>; body?: Buffer | ReadableStream | null; scope?: 'pull' | 'push'; extraScopes?: string[] } = {}): Promise<Response> {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : `${this.base}${pathOrUrl}`;
    const scopes = [`repository:${this.ref.path}:${init.scope === 'push' ? 'pull,push' : 'pull'}`, ...(init.extraScopes ?? [])];
    const scopeKey = scopes.join(' ');
    const streaming = init.body !== undefined && init.body !== null && !Buffer.isBuffer(init.body);
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...(init.headers ?? {}) };
      const token = this.tokens.get(scopeKey);
      if (token) headers.Authorization = `Bearer ${token}`;
      else if (this.basic && this.opts.credentials?.username) headers.Authorization = basicHeader(this.opts.credentials);
      let res: Response;
      try {
        res = await fetch(url, { method, headers, body: init.body as BodyInit | null | undefined, redirect: 'follow', ...(streaming ? { duplex: 'half' } : {}) } as RequestInit);
      } catch (err) {
        if (attempt < 3 && !streaming) {
          await sleep(200 * 2 ** attempt);
          continue;
        }
        throw internal(`cannot reach registry ${this.ref.domain}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
      }
      if (res.status === 401 && attempt === 0 && !streaming) {
        const challenge = parseChallenge(res.headers.get('www-authenticate'));
        await res.arrayBuffer().catch(() => undefined);
        if (challenge?.scheme === 'bearer') {
          this.tokens.set(scopeKey, await this.fetchToken(challenge.params, scopes));
          continue;
        }
        if (challenge?.scheme === 'basic' && this.opts.credentials?.username) {
          this.basic = true;
          continue;
        }
        throw unauthorized(`authentication required by ${this.ref.domain}`);
      }
      if (res.status >= 500 && attempt < 3 && !streaming) {
        await res.arrayBuffer().catch(() => undefined);
        await sleep(200 * 2 ** attempt);
        continue;
      }
      return res;
    }
  }

  /** The token flow: GET realm?service=&scope= with Basic credentials if we have them. */
  private async fetchToken(params: Record<string, string>, scopes: string[]): Promise<string> {
    if (!params.realm) throw unauthorized(`registry ${this.ref.domain} sent a Bearer challenge without a realm`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const c = this.opts.credentials;
    if (c?.username) url.searchParams.set('account', c.username);
    const res = await fetch(url, { headers: c?.username && c.password ? { Authorization: basicHeader(c) } : {} }).catch((err: Error) => {
      throw internal(`cannot reach the token server ${url.origin}: ${err.message}`);
    });
    const text = await res.text();
    if (res.status === 401 || res.status === 403) throw unauthorized(`${this.ref.domain}: unauthorized: incorrect username or password`);
    if (!res.ok) throw internal(`token server ${url.origin} answered ${res.status}`);
    let body: { token?: string; access_token?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw internal(`token server ${url.origin} sent no JSON`);
    }
    const token = body.token ?? body.access_token;
    if (!token) throw internal(`token server ${url.origin} sent no token`);
    return token;
  }
}

function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password ?? c.identitytoken ?? ''}`).toString('base64')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Turns a failed registry response into an engine error with the registry's own words. */
export async function registryError(res: Response, what: string): Promise<Error> {
  let detail = '';
  try {
    const body = (await res.json()) as { errors?: Array<{ code?: string; message?: string }> };
    detail = (body.errors ?? []).map((e) => `${(e.code ?? '').toLowerCase().replace(/_/g, ' ')}: ${e.message ?? ''}`.trim()).join('; ');
  } catch {
    /* not JSON */
  }
  const msg = `${what}: ${detail || `HTTP ${res.status}`}`;
  if (res.status === 404) return notFound(msg);
  if (res.status === 401 || res.status === 403) return unauthorized(msg);
  return internal(msg);
}

/** `login`: checks credentials against the registry's /v2/ endpoint. */
export async function checkLogin(domain: string, opts: RegistryOptions): Promise<void> {
  const client = new RegistryClient({ domain, path: '' }, opts);
  const first = await fetch(`${client.base}/v2/`).catch((err: Error) => {
    throw internal(`cannot reach registry ${domain}: ${(err.cause as Error | undefined)?.message ?? err.message}`);
  });
  await first.arrayBuffer().catch(() => undefined);
  if (first.ok) return;
  const challenge = parseChallenge(first.headers.get('www-authenticate'));
  const c = opts.credentials;
  const denied = () => unauthorized(`login attempt to ${client.base}/v2/ failed with status: 401 Unauthorized`);
  if (challenge?.scheme === 'basic') {
    const res = await fetch(`${client.base}/v2/`, { headers: c?.username ? { Authorization: basicHeader(c) } : {} });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw denied();
    return;
  }
  if (challenge?.scheme === 'bearer' && challenge.params.realm) {
    const url = new URL(challenge.params.realm);
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    if (c?.username) url.searchParams.set('account', c.username);
    const res = await fetch(url, { headers: c?.username ? { Authorization: basicHeader(c) } : {} });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw denied();
    return;
  }
  throw denied();
}
