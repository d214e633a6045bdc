/**
 * `GET /distribution/{name}/json`: what the registry has under a reference,
 * without pulling it. The descriptor of the manifest (or index) the tag points
 * at, and the platforms it serves: an index's entries, or for a single
 * manifest the platform its config names (as dockerd does).
 */
import { invalid } from '../../common/errors.js';
import type { ImageRef } from '../reference.js';
import { RegistryClient, registryError, type RegistryOptions } from './client.js';
import { fetchManifest, indexSchema, ManifestTypes } from './pull.js';
import { manifestSchema } from '../store.js';

export interface DistributionInspect {
  Descriptor: { mediaType: string; digest: string; size: number };
  Platforms: Array<{ architecture: string; os: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] }>;
}

const MAX_CONFIG = 4 * 1024 * 1024;

export async function inspectDistribution(ref: ImageRef, opts: RegistryOptions): Promise<DistributionInspect> {
  const client = new RegistryClient(ref, opts);
  const top = await fetchManifest(client, ref.digest ?? ref.tag ?? 'latest', ref.digest);
  const Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.body.length };
  const json = JSON.parse(top.body.toString('utf8')) as unknown;
  if (top.mediaType === ManifestTypes.ociIndex || top.mediaType === ManifestTypes.dockerList) {
    const index = indexSchema.safeParse(json);
    if (!index.success) throw invalid('registry sent a malformed image index');
    const Platforms = index.data.manifests.filter((m) => m.platform).map((m) => ({ ...m.platform! }));
    return { Descriptor, Platforms };
  }
  const manifest = manifestSchema.safeParse(json);
  if (!manifest.success) throw invalid('registry sent a malformed image manifest');
  const res = await client.repo('GET', `blobs/${manifest.data.config.digest}`);
  if (!res.ok) throw await registryError(res, `config ${manifest.data.config.digest}`);
  const text = await res.text();
  if (text.length > MAX_CONFIG) throw invalid('registry sent an oversized image config');
  let config: { architecture?: string; os?: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] };
  try {
    config = JSON.parse(text) as typeof config;
  } catch {
    throw invalid('registry sent an image config that is not JSON');
  }
  const platform: DistributionInspect['Platforms'][number] = { architecture: config.architecture ?? '', os: config.os ?? '' };
  if (config.variant) platform.variant = config.variant;
  if (config['os.version']) platform['os.version'] = config['os.version'];
  if (config['os.features']?.length) platform['os.features'] = config['os.features'];
  return { Descriptor, Platforms: [platform] };
}

export interface SearchResult {
  name: string;
  description: string;
  star_count: number;
  is_official: boolean;
  is_automated: boolean;
}

/** `search` in a registry that has no search index: its /v2/_catalog, filtered by TERM (a substring). */
export async function searchCatalog(domain: string, term: string, limit: number, opts: RegistryOptions): Promise<SearchResult[]> {
  const client = new RegistryClient({ domain, path: '' }, opts);
  const res = await client.request('GET', `/v2/_catalog?n=1000`, { extraScopes: ['registry:catalog:*'] });
  if (!res.ok) throw await registryError(res, `catalog of ${domain}`);
  const text = await res.text();
  if (text.length > MAX_CONFIG) throw invalid(`registry ${domain} sent an oversized catalog`);
  let repos: unknown;
  try {
    repos = (JSON.parse(text) as { repositories?: unknown }).repositories;
  } catch {
    throw invalid(`registry ${domain} sent a catalog that is not JSON`);
  }
  if (!Array.isArray(repos)) throw invalid(`registry ${domain} sent a malformed catalog`);
  return repos
    .filter((r): r is string => typeof r === 'string' && r.includes(term))
    .slice(0, limit)
    .map((r) => ({ name: `${domain}/${r}`, description: '', star_count: 0, is_official: false, is_automated: false }));
}
