/**
 * Docker image references: "busybox" means "docker.io/library/busybox:latest".
 */
import { invalid } from '../common/errors.js';

export interface ImageRef {
  domain: string;
  path: string;
  tag?: string;
  digest?: string;
}

const DEFAULT_DOMAIN = 'docker.io';
const refPattern = /^(?:([a-zA-Z0-9.-]+(?::[0-9]+)?)\/)?([a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$/;

export function parseReference(input: string): ImageRef {
  const m = refPattern.exec(input);
  if (!m) throw invalid(`invalid reference format: "${input}"`);
  let [, domain, path, tag, digest] = m as unknown as [string, string | undefined, string, string | undefined, string | undefined];
  // "localhost:5000/x" and "a.b/x" name a registry; "user/x" does not.
  if (domain && !domain.includes('.') && !domain.includes(':') && domain !== 'localhost') {
    // Not a registry, so a path component, which is lower case only (as Docker: "UPPER/x" is invalid).
    if (domain !== domain.toLowerCase()) throw invalid(`invalid reference format: repository name (${domain}/${path}) must be lowercase`);
    path = `${domain}/${path}`;
    domain = undefined;
  }
  domain ??= DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path!.includes('/')) path = `library/${path}`;
  if (!tag && !digest) tag = 'latest';
  return { domain, path: path!, tag, digest };
}

export function formatReference(ref: ImageRef): string {
  return `${ref.domain}/${ref.path}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The short form Docker shows: "busybox:latest", "localhost:5000/x:1". */
export function familiarName(ref: ImageRef): string {
  let name = `${ref.domain}/${ref.path}`;
  if (ref.domain === DEFAULT_DOMAIN) name = ref.path.startsWith('library/') ? ref.path.slice(8) : ref.path;
  return `${name}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}
