/**
 * `GET /containers/json` as dockerd answers it (moby daemon/list.go): the
 * accepted filter keys, their matching rules (name and id are unanchored
 * regular expressions, status/volume/network exact, label key or key=value,
 * all ANDed across keys and ORed within one), before/since by creation order,
 * and which filters imply `all`.
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

function labelsMatch(wanted: string[], labels: Record<string, string>): boolean {
  return wanted.every((l) => {
    const eq = l.indexOf('=');
    if (eq < 0) return l in labels;
    const k = l.slice(0, eq);
    return k in labels && labels[k] === l.slice(eq + 1);
  });
}

export class ContainerQuery {
  constructor(private readonly ctx: EngineContext) {}

  list(opts: ListOptions = {}): Container[] {
    const f = opts.filters ?? {};
    for (const k of Object.keys(f)) if (!ACCEPTED.includes(k)) throw invalid(`invalid filter '${k}'`);
    for (const s of f.status ?? []) if (!STATES.includes(s as ContainerStatus)) throw invalid(`invalid filter 'status=${s}'`);
    for (const h of f.health ?? []) if (!HEALTH.includes(h)) throw invalid(`invalid filter 'health=${h}'`);
    const exited = (f.exited ?? []).map((v) => {
      if (!/^-?\d+$/.test(v)) throw invalid(`invalid filter 'exited=${v}'`);
      return Number(v);
    });
    const { registry } = this.ctx;
    const before = f.before?.length ? registry.get(f.before[f.before.length - 1]!) : undefined;
    const since = f.since?.length ? registry.get(f.since[f.since.length - 1]!) : undefined;
    const limit = opts.limit && opts.limit > 0 ? opts.limit : 0;
    // Like dockerd: a status or exited filter, and a limit, list stopped containers too.
    const all = !!opts.all || !!f.status?.length || exited.length > 0 || limit > 0;
    const ancestors = f.ancestor ? this.ancestorIds(f.ancestor) : undefined;
    const networks = f.network?.map((n) => this.ctx.networks.find(n));

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
      if (f.name && !f.name.some((t) => matches(t, c.name))) continue;
      if (f.id && !f.id.some((t) => matches(t, c.id))) continue;
      if (f.status && !f.status.includes(c.record.State.Status)) continue;
      if (f.health && !f.health.includes('none')) continue; // hyperbox runs no health checks
      if (f.label && !labelsMatch(f.label, c.record.Config.Labels ?? {})) continue;
      if (f.volume && !(c.record.MountPoints ?? []).some((m) => f.volume!.includes(m.Destination) || (!!m.Name && f.volume!.includes(m.Name)))) continue;
      if (exited.length && (c.running || c.record.State.StartedAt.startsWith('0001') || !exited.includes(c.record.State.ExitCode))) continue;
      if (ancestors && !ancestors.has(c.record.ImageId)) continue;
      if (f.network && !this.onNetwork(c, f.network, networks!)) continue;
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

  private onNetwork(c: Container, wanted: string[], resolved: Array<{ Id: string; Name: string } | undefined>): boolean {
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
    return wanted.some((w, i) => w === name || w === id || (!!id && id.startsWith(w)) || resolved[i]?.Id === id || resolved[i]?.Name === name);
  }
}
