/**
 * `GET /containers/json` as dockerd answers it (moby daemon/list.go): the
 * accepted filter keys and their matching rules (name: an unanchored regular
 * expression on the name with or without its slash; id: a unique ID prefix;
 * status, volume, network exact; label: key or key=value), ANDed across keys
 * and ORed within one; before/since by creation order; publish/expose ports;
 * and which filters imply `all` (status and a limit do, exited does not).
 */
import { invalid } from '../common/errors.js';
import type { Container } from './container.js';
import type { EngineContext } from './context.js';
import { DEFAULT_NETWORK, networkModeOf } from './ports.js';
import type { ContainerStatus } from './types.js';

const ACCEPTED = ['ancestor', 'before', 'exited', 'health', 'id', 'label', 'name', 'status', 'since', 'volume', 'network', 'is-task', 'publish', 'expose'];
const STATES: ContainerStatus[] = ['created', 'running', 'paused', 'restarting', 'removing', 'exited', 'dead'];
const HEALTH = ['starting', 'healthy', 'unhealthy', 'none'];

export interface ListOptions {
  all?: boolean;
  limit?: number;
  filters?: Record<string, string[]>;
}

/** dockerd's filters.Match: equal, or the term as an unanchored regular expression. */
function matches(term: string, source: string): boolean {
  if (term === source) return true;
  try {
    return new RegExp(term).test(source);
  } catch {
    return false;
  }
}

/** Docker's `label` filter: every entry, KEY or KEY=VALUE, holds for LABELS. */
export function labelsMatch(wanted: string[], labels: Record<string, string>): boolean {
  return wanted.every((l) => {
    const eq = l.indexOf('=');
    if (eq < 0) return l in labels;
    const k = l.slice(0, eq);
    return k in labels && labels[k] === l.slice(eq + 1);
  });
}

/** `publish`/`expose` values: PORT[-PORT][/PROTO] (tcp by default), as "port/proto" keys. */
function portSet(key: string, values: string[]): Set<string> {
  const out = new Set<string>();
  for (const v of values) {
    if (v.includes(':')) throw invalid(`filter for '${key}' should not contain ':': ${v}`);
    const [range, proto = 'tcp'] = v.split('/');
    const m = /^(\d+)(?:-(\d+))?$/.exec(range ?? '');
    const start = Number(m?.[1]);
    const end = m?.[2] ? Number(m[2]) : start;
    if (!m || start < 1 || end > 65535 || end < start) throw invalid(`error while looking up for ${key} ${v}: invalid port range`);
    for (let p = start; p <= end; p++) out.add(`${p}/${proto}`);
  }
  return out;
}

/** dockerd: a published (host) port in PUBLISH, or a container port in EXPOSE, among the running container's ports. */
function portsMatch(c: Container, publish: Set<string>, expose: Set<string>): boolean {
  for (const [key, bindings] of Object.entries(c.running ? (c.record.Ports ?? {}) : {})) {
    const proto = key.split('/')[1] ?? 'tcp';
    if (expose.has(key.includes('/') ? key : `${key}/tcp`)) return true;
    if ((bindings ?? []).some((b) => publish.has(`${b.HostPort}/${proto}`))) return true;
  }
  return false;
}

export class ContainerQuery {
  constructor(private readonly ctx: EngineContext) {}

  list(opts: ListOptions = {}): Container[] {
    const f = opts.filters ?? {};
    for (const k of Object.keys(f)) if (!ACCEPTED.includes(k)) throw invalid(`invalid filter '${k}'`);
    for (const s of f.status ?? []) if (!STATES.includes(s as ContainerStatus)) throw invalid(`invalid filter 'status=${s}'`);
    for (const h of f.health ?? []) if (!HEALTH.includes(h)) throw invalid(`Unrecognised filter value for health: ${h}`);
    const isTask = f['is-task'];
    if (isTask && !(isTask.length === 1 && ['true', 'false'].includes(isTask[0]!))) throw invalid(`invalid filter 'is-task=${isTask.join(',')}'`);
    const publish = portSet('publish', f.publish ?? []);
    const expose = portSet('expose', f.expose ?? []);
    const exited = (f.exited ?? []).map((v) => {
      if (!/^-?\d+$/.test(v)) throw invalid(`invalid filter 'exited=${v}'`);
      return Number(v);
    });
    const { registry } = this.ctx;
    const before = f.before?.length ? registry.get(f.before[f.before.length - 1]!) : undefined;
    const since = f.since?.length ? registry.get(f.since[f.since.length - 1]!) : undefined;
    const limit = opts.limit && opts.limit > 0 ? opts.limit : 0;
    // Like dockerd: a status filter, and a limit, list stopped containers too (exited does not:
    // `docker ps --filter exited=0` without -a lists nothing, as with dockerd).
    const all = !!opts.all || !!f.status?.length || limit > 0;
    const ancestors = f.ancestor ? this.ancestorIds(f.ancestor) : undefined;
    // dockerd: an id value is a unique ID prefix (an ambiguous one matches nothing).
    const idMatches = f.id ? new Set(f.id.map((v) => registry.list().filter((c) => c.id.startsWith(v))).flatMap((l) => (l.length === 1 ? [l[0]!.id] : []))) : undefined;

    const out: Container[] = [];
    let seenBefore = !before;
    for (const c of registry.list()) {
      if (since && c.id === since.id) break;
      if (!seenBefore) {
        if (c.id === before!.id) seenBefore = true;
        continue;
      }
      if (limit && out.length === limit) break;
      if (!c.running && !all) continue;
      if (f.name && !f.name.some((t) => matches(t, c.name) || matches(t, c.name.replace(/^\//, '')))) continue;
      if (idMatches && !idMatches.has(c.id)) continue;
      if (f.status && !f.status.includes(c.record.State.Status)) continue;
      if (f.health && !f.health.includes('none')) continue; // hyperbox runs no health checks
      if (f.label && !labelsMatch(f.label, c.record.Config.Labels ?? {})) continue;
      if (isTask?.[0] === 'true') continue; // no swarm: no container is a task
      if (f.volume && !(c.record.MountPoints ?? []).some((m) => f.volume!.includes(m.Destination) || f.volume!.includes(m.Name || m.Source))) continue;
      if (exited.length && (c.running || c.record.State.StartedAt.startsWith('0001') || !exited.includes(c.record.State.ExitCode))) continue;
      if (ancestors && !ancestors.has(c.record.ImageId)) continue;
      if (f.network && !this.onNetwork(c, f.network)) continue;
      if ((publish.size || expose.size) && !portsMatch(c, publish, expose)) continue;
      out.push(c);
    }
    return out;
  }

  /** Image IDs named by ANCESTOR values (name, name:tag, ID or prefix); unknown images match nothing, as in dockerd. */
  private ancestorIds(values: string[]): Set<string> {
    const ids = new Set<string>();
    for (const v of values) {
      try {
        ids.add(this.ctx.store.resolve(v).id);
      } catch {
        // dockerd logs and ignores an ancestor it cannot find
      }
    }
    return ids;
  }

  /** dockerd: the network's name, or a prefix of its ID. */
  private onNetwork(c: Container, wanted: string[]): boolean {
    const ep = c.record.Endpoint;
    let name: string;
    let id = '';
    if (ep) {
      name = ep.NetworkName;
      id = ep.NetworkId;
    } else {
      const mode = c.record.HostConfig.NetworkMode;
      if (mode && !['default', DEFAULT_NETWORK, 'none', 'host'].includes(mode) && !mode.startsWith('container:')) {
        name = mode;
        id = this.ctx.networks.find(mode)?.Id ?? '';
      } else {
        try {
          name = networkModeOf(mode) === 'none' ? 'none' : DEFAULT_NETWORK;
        } catch {
          return false;
        }
        id = name === DEFAULT_NETWORK ? (this.ctx.networks.defaultBridge?.Id ?? DEFAULT_NETWORK) : name;
      }
    }
    return wanted.some((w) => w === name || (!!id && id.startsWith(w)));
  }
}
