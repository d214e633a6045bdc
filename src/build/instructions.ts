/**
 * What the metadata instructions do to an image's config (ENV, LABEL,
 * MAINTAINER, EXPOSE, CMD, ENTRYPOINT, VOLUME, USER, WORKDIR, STOPSIGNAL,
 * HEALTHCHECK, SHELL, ONBUILD), and the history line each leaves, as
 * Docker's classic builder writes them. Pure: no I/O, unit-tested.
 */
import { invalid } from '../common/errors.js';
import type { ImageConfig } from '../images/store.js';
import { jsonForm, splitFlags, type Instruction } from './dockerfile.js';
import { expandWord, expandWords, keyValues, type Env } from './shell-words.js';

export type RunConfig = ImageConfig['config'] & {
  Volumes?: Record<string, object> | null;
  Healthcheck?: Record<string, unknown> | null;
  OnBuild?: string[] | null;
  Shell?: string[] | null;
};

export const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** The state a stage's instructions share besides the config. */
export interface StageVars {
  /** Variables visible to substitution: ARGs in effect, then ENV (which wins). */
  env: Env;
  escape: string;
  /** Whether this stage set CMD itself (ENTRYPOINT clears an inherited CMD). */
  cmdSet: boolean;
}

/** The exec form of CMD/ENTRYPOINT/RUN: JSON as given, or the shell form wrapped in SHELL. */
export function commandForm(args: string, shell: string[]): { argv: string[]; json: boolean } {
  const json = jsonForm(args);
  if (json) return { argv: json, json: true };
  return { argv: [...shell, args], json: false };
}

/** Go's time.ParseDuration for HEALTHCHECK flags, in nanoseconds. */
export function parseDuration(v: string, flag: string): number {
  if (v === '0') return 0;
  const units: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let rest = v;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) throw invalid(`invalid duration for --${flag}: ${v}`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

function healthcheck(ins: Instruction): Record<string, unknown> {
  const { flags, args } = ins;
  const typeMatch = /^(\S+)\s*([\s\S]*)$/.exec(args.trim());
  const type = (typeMatch?.[1] ?? '').toUpperCase();
  if (type === 'NONE') {
    if (typeMatch?.[2]) throw invalid('HEALTHCHECK NONE takes no arguments');
    return { Test: ['NONE'] };
  }
  if (type !== 'CMD') throw invalid(`Unknown type "${type}" in HEALTHCHECK (try CMD)`);
  const cmd = typeMatch?.[2] ?? '';
  const json = jsonForm(cmd);
  const hc: Record<string, unknown> = { Test: json ? ['CMD', ...json] : ['CMD-SHELL', cmd] };
  for (const [flag, key] of [['interval', 'Interval'], ['timeout', 'Timeout'], ['start-period', 'StartPeriod'], ['start-interval', 'StartInterval']] as const) {
    if (flags[flag] !== undefined) hc[key] = parseDuration(flags[flag]!, flag);
  }
  if (flags.retries !== undefined) {
    const n = Number(flags.retries);
    if (!Number.isInteger(n) || n < 0) throw invalid(`invalid --retries: ${flags.retries}`);
    hc.Retries = n;
  }
  for (const f of Object.keys(flags)) if (!['interval', 'timeout', 'start-period', 'start-interval', 'retries'].includes(f)) throw invalid(`Unknown flag: ${f}`);
  return hc;
}

function exposedPorts(words: string[]): string[] {
  const out: string[] = [];
  for (const w of words) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(w);
    if (!m) throw invalid(`invalid containerPort: ${w}`);
    const lo = Number(m[1]);
    const hi = m[2] ? Number(m[2]) : lo;
    if (hi < lo || hi > 65535) throw invalid(`invalid port range: ${w}`);
    for (let p = lo; p <= hi; p++) out.push(`${p}/${(m[3] ?? 'tcp').toLowerCase()}`);
  }
  return out;
}

/** The escape-aware JSON or space-separated word list (VOLUME). */
function wordsOrJson(args: string, v: StageVars): string[] {
  return jsonForm(args)?.map((w) => expandWord(w, v.env, v.escape)) ?? expandWords(args, v.env, v.escape);
}

const nop = (text: string) => `/bin/sh -c #(nop) ${text}`;

/**
 * Applies a metadata instruction to CFG (returned as a new object) and gives
 * the history line. Throws (invalid) with Docker's wording on a bad argument.
 */
export function applyMetadata(cfg: RunConfig, ins: Instruction, v: StageVars): { config: RunConfig; createdBy: string; author?: string } {
  const out: RunConfig = { ...cfg };
  const shell = cfg.Shell?.length ? cfg.Shell : DEFAULT_SHELL;
  switch (ins.cmd) {
    case 'ENV': {
      const pairs = keyValues(ins.args, v.env, v.escape, { legacy: true });
      if (!pairs.length) throw invalid('ENV requires at least one argument');
      let env = [...(cfg.Env ?? [])];
      for (const [k, val] of pairs) env = [...env.filter((e) => e.split('=')[0] !== k), `${k}=${val ?? ''}`];
      out.Env = env;
      return { config: out, createdBy: nop(`ENV ${pairs.map(([k, val]) => `${k}=${val}`).join(' ')}`) };
    }
    case 'LABEL': {
      const pairs = keyValues(ins.args, v.env, v.escape, { legacy: true });
      if (!pairs.length) throw invalid('LABEL requires at least one argument');
      out.Labels = { ...(cfg.Labels ?? {}) };
      for (const [k, val] of pairs) out.Labels[k] = val ?? '';
      return { config: out, createdBy: nop(`LABEL ${pairs.map(([k, val]) => `${k}=${val}`).join(' ')}`) };
    }
    case 'MAINTAINER':
      return { config: out, createdBy: nop(`MAINTAINER ${ins.args}`), author: ins.args };
    case 'EXPOSE': {
      const ports = exposedPorts(expandWords(ins.args, v.env, v.escape));
      if (!ports.length) throw invalid('EXPOSE requires at least one argument');
      out.ExposedPorts = { ...(cfg.ExposedPorts ?? {}) };
      for (const p of ports) out.ExposedPorts[p] = {};
      return { config: out, createdBy: nop(`EXPOSE ${ports.join(' ')}`) };
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      const { argv } = commandForm(ins.args, shell);
      if (ins.cmd === 'CMD') {
        out.Cmd = argv;
        v.cmdSet = true;
      } else {
        out.Entrypoint = ins.args.trim() ? argv : null;
        if (!v.cmdSet) out.Cmd = null;
      }
      return { config: out, createdBy: nop(`${ins.cmd} ${JSON.stringify(argv)}`) };
    }
    case 'VOLUME': {
      const vols = wordsOrJson(ins.args, v);
      if (!vols.length || vols.some((x) => !x.trim())) throw invalid('VOLUME specified can not be an empty string');
      out.Volumes = { ...(cfg.Volumes ?? {}) };
      for (const p of vols) out.Volumes[p] = {};
      return { config: out, createdBy: nop(`VOLUME ${JSON.stringify(vols)}`) };
    }
    case 'USER': {
      const user = expandWord(ins.args.trim(), v.env, v.escape);
      if (!user) throw invalid('USER requires exactly one argument');
      out.User = user;
      return { config: out, createdBy: nop(`USER ${user}`) };
    }
    case 'WORKDIR': {
      const dir = expandWord(ins.args.trim(), v.env, v.escape);
      if (!dir) throw invalid('WORKDIR requires exactly one argument');
      out.WorkingDir = dir.startsWith('/') ? dir : `${(cfg.WorkingDir || '/').replace(/\/$/, '')}/${dir}`;
      return { config: out, createdBy: nop(`WORKDIR ${out.WorkingDir}`) };
    }
    case 'STOPSIGNAL': {
      const sig = expandWord(ins.args.trim(), v.env, v.escape);
      if (!/^(SIG)?[A-Z0-9+-]+$|^\d+$/i.test(sig)) throw invalid(`Invalid signal: ${sig}`);
      out.StopSignal = sig;
      return { config: out, createdBy: nop(`STOPSIGNAL ${sig}`) };
    }
    case 'HEALTHCHECK': {
      const { flags, args } = splitFlags(ins.args);
      out.Healthcheck = healthcheck({ ...ins, flags: { ...ins.flags, ...flags }, args });
      return { config: out, createdBy: nop(`HEALTHCHECK &{${JSON.stringify(out.Healthcheck)}}`) };
    }
    case 'SHELL': {
      const json = jsonForm(ins.args);
      if (!json?.length) throw invalid('SHELL requires the arguments to be in JSON form');
      out.Shell = json;
      return { config: out, createdBy: nop(`SHELL ${JSON.stringify(json)}`) };
    }
    case 'ONBUILD': {
      const m = /^(\S+)\s*([\s\S]*)$/.exec(ins.args.trim());
      const trigger = (m?.[1] ?? '').toUpperCase();
      if (!trigger) throw invalid('ONBUILD requires at least one argument');
      if (trigger === 'ONBUILD') throw invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === 'FROM' || trigger === 'MAINTAINER') throw invalid(`${trigger} isn't allowed as an ONBUILD trigger`);
      const text = `${trigger} ${m?.[2] ?? ''}`.trim();
      out.OnBuild = [...(cfg.OnBuild ?? []), text];
      return { config: out, createdBy: nop(`ONBUILD ${text}`) };
    }
    default:
      throw invalid(`${ins.cmd} is not a metadata instruction`);
  }
}
