/**
 * Host plumbing of bridge networks, with the standard tools (ip, iptables):
 * a Linux bridge per network holding its gateway address, a TAP device per
 * container VM enslaved to it, NAT for outbound traffic and filter rules that
 * keep different hyperbox networks apart. Every step is idempotent, so a daemon
 * can re-run it at start after a crash or a host reboot.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { internal } from '../../common/errors.js';

/** All hyperbox bridges start with this (iptables matches them as `hb-+`). */
export const BRIDGE_PREFIX = 'hb-';
const CHAIN = 'HYPERBOX-FORWARD';

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    throw internal(`${cmd} ${args.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

function succeeds(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function linkExists(name: string): boolean {
  return fs.existsSync(`/sys/class/net/${name}`);
}

/** Appends an iptables rule unless it is already there. */
function ensureRule(table: string, chain: string, rule: string[]): void {
  if (!succeeds('iptables', ['-w', '-t', table, '-C', chain, ...rule])) run('iptables', ['-w', '-t', table, '-A', chain, ...rule]);
}

function deleteRule(table: string, chain: string, rule: string[]): void {
  while (succeeds('iptables', ['-w', '-t', table, '-D', chain, ...rule])) {
    /* a rule added twice by a crashed daemon goes twice */
  }
}

function bridgeRules(bridge: string, internalOnly: boolean): string[][] {
  return [
    ['-i', bridge, '-o', bridge, '-j', 'ACCEPT'],
    // Another hyperbox network is not reachable, in either direction.
    ['-i', bridge, '-o', `${BRIDGE_PREFIX}+`, '-j', 'DROP'],
    ['-i', `${BRIDGE_PREFIX}+`, '-o', bridge, '-j', 'DROP'],
    ['-i', bridge, '-j', internalOnly ? 'DROP' : 'ACCEPT'],
    ['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ['-o', bridge, '-j', 'DROP'],
  ];
}

function natRule(bridge: string, subnet: string): string[] {
  return ['-s', subnet, '!', '-o', bridge, '-j', 'MASQUERADE'];
}

export interface BridgeSpec {
  bridge: string;
  subnet: string;
  gateway: string;
  prefix: number;
  internal: boolean;
}

/** Creates (or repairs) a network's bridge, address and rules. */
export function ensureBridge(spec: BridgeSpec): void {
  if (!linkExists(spec.bridge)) run('ip', ['link', 'add', spec.bridge, 'type', 'bridge']);
  run('ip', ['addr', 'replace', `${spec.gateway}/${spec.prefix}`, 'dev', spec.bridge]);
  run('ip', ['link', 'set', spec.bridge, 'up']);
  if (!succeeds('iptables', ['-w', '-n', '-L', CHAIN])) run('iptables', ['-w', '-N', CHAIN]);
  if (!succeeds('iptables', ['-w', '-C', 'FORWARD', '-j', CHAIN])) run('iptables', ['-w', '-I', 'FORWARD', '1', '-j', CHAIN]);
  for (const r of bridgeRules(spec.bridge, spec.internal)) ensureRule('filter', CHAIN, r);
  if (!spec.internal) {
    ensureRule('nat', 'POSTROUTING', natRule(spec.bridge, spec.subnet));
    // Outbound NAT needs the host to route; the rules above keep networks apart.
    fs.writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  }
}

export function removeBridge(spec: BridgeSpec): void {
  for (const r of bridgeRules(spec.bridge, spec.internal)) deleteRule('filter', CHAIN, r);
  deleteRule('nat', 'POSTROUTING', natRule(spec.bridge, spec.subnet));
  if (linkExists(spec.bridge)) run('ip', ['link', 'del', spec.bridge]);
}

/** A persistent TAP device on the bridge, for QEMU to open (`-netdev tap,ifname=`). */
export function createTap(tap: string, bridge: string): void {
  if (linkExists(tap)) run('ip', ['link', 'del', tap]);
  run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  run('ip', ['link', 'set', tap, 'master', bridge, 'up']);
}

export function deleteTap(tap: string): void {
  if (linkExists(tap)) succeeds('ip', ['link', 'del', tap]);
}

/** Network interfaces whose name starts with a prefix. */
export function linksWithPrefix(prefix: string): string[] {
  try {
    return fs.readdirSync('/sys/class/net').filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

/** IPv4 networks already present on the host, as [address, prefix]. */
export function hostIpv4Networks(): Array<[string, number]> {
  const out = run('ip', ['-4', '-o', 'addr', 'show']);
  return [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)].map((m) => [m[1]!, Number(m[2])]);
}
