/** What a build is asked for (the API's query parameters) and where its progress goes. */
import { invalid } from '../common/errors.js';
import type { Credentials } from '../images/registry/auth.js';

export interface BuildOptions {
  dockerfile: string;
  tags: string[];
  target?: string;
  noCache: boolean;
  pull: boolean;
  buildArgs: Record<string, string | null>;
  labels: Record<string, string>;
  platform?: string;
  insecure: string[];
  /** Registry credentials by registry host (the client's X-Registry-Config), for pulling base images. */
  credentials?: Record<string, Credentials>;
  /** Aborted when the client goes away: the build stops before its next step. */
  signal?: AbortSignal;
}

export interface BuildOutput {
  /** The context has been read whole: the answer may start. */
  ready?(): void;
  stream(text: string): void;
  aux(value: unknown): void;
  /** A base image's pull progress ({status, id, progress}), as pull's stream carries it. */
  status(msg: Record<string, unknown>): void;
}

/** Build arguments every build knows (BuildKit's automatic platform args, fixed to this engine's). */
export const PLATFORM_ARGS: Record<string, string> = {
  TARGETPLATFORM: 'linux/amd64',
  TARGETOS: 'linux',
  TARGETARCH: 'amd64',
  BUILDPLATFORM: 'linux/amd64',
  BUILDOS: 'linux',
  BUILDARCH: 'amd64',
};

/** Only linux/amd64 images run here: a FROM or build for another platform is refused. */
export function checkPlatform(p: string | undefined): void {
  if (!p) return;
  const norm = p.toLowerCase().replace(/^linux\//, '');
  if (norm !== 'amd64' && norm !== 'x86_64') throw invalid(`platform "${p}" is not supported: hyperbox builds and runs linux/amd64 images only`);
}

/** The registry host a credentials key names ("https://index.docker.io/v1/", "localhost:5000", "registry.example/"). */
export function registryHostOf(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

/**
 * X-Registry-Config: base64url JSON of {registry: {username, password, auth,
 * identitytoken}}, as the docker CLI and docker-py send every build. An
 * unreadable header is ignored (builds from public images need none).
 */
export function parseRegistryConfig(header: string | undefined): Record<string, Credentials> {
  if (!header) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
  } catch {
    return {};
  }
  const out: Record<string, Credentials> = {};
  for (const [key, v] of Object.entries(parsed && typeof parsed === 'object' ? parsed : {})) {
    if (!v || typeof v !== 'object') continue;
    const e = v as Record<string, unknown>;
    const str = (k: string) => (typeof e[k] === 'string' && e[k] !== '' ? (e[k] as string) : undefined);
    let { username, password } = { username: str('username'), password: str('password') };
    const auth = str('auth');
    if (!username && auth) {
      const decoded = Buffer.from(auth, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i > 0) [username, password] = [decoded.slice(0, i), decoded.slice(i + 1)];
    }
    const identitytoken = str('identitytoken');
    if (username || identitytoken) out[registryHostOf(key)] = { username, password, identitytoken, serveraddress: key };
  }
  return out;
}
