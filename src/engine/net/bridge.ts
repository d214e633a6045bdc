/**
 * Host plumbing of bridge networks, with the standard tools (ip, iptables,
 * ebtables): a Linux bridge per network holding its gateway address (IPv4
 * only), a TAP device per container VM enslaved to it, NAT for outbound
 * traffic, filter rules that keep different hyperbox networks apart, and
 * anti-spoofing rules per TAP so a VM only sends as its own MAC and IPv4
 * address. Every step is idempotent, so a daemon can re-run it at start after
 * a crash or a host reboot.
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
  // Bridge networks are IPv4 only: the host has no (link-local) IPv6 address on them.
  disableIpv6(spec.bridge);
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
  // Before it is up: the host side sends no IPv6 router solicitations into the guest.
  disableIpv6(tap);
  run('ip', ['link', 'set', tap, 'master', bridge, 'up']);
}

/** Turns IPv6 off on a link (bridge or TAP; for a TAP, before it is up). */
export function disableIpv6(link: string): void {
  const knob = `/proc/sys/net/ipv6/conf/${link}/disable_ipv6`;
  // No such file: the host has no IPv6 at all.
  if (fs.existsSync(knob)) fs.writeFileSync(knob, '1');
}

/*
 * Anti-spoofing (ebtables, nf_tables backend, table `filter` of the bridge
 * family). Each protected TAP has a chain of its own, HB-<tap>, reached from
 * the bridge's FORWARD (to other ports) and INPUT (to the host) chains by a
 * jump on the TAP as input port. It lets through only IPv4 from the
 * endpoint's address and ARP whose sender is the endpoint (MAC and IPv4),
 * both with the endpoint's MAC as Ethernet source; every other frame (another
 * source MAC, another address, IPv6, VLAN tags, other ethertypes) is dropped.
 * Frames the host or other ports send to the VM are not touched.
 */
const SPOOF_PREFIX = 'HB-';
const TAP_RE = /^[A-Za-z0-9_.-]{1,15}$/;
/** A MAC address as hyperbox stores them: six lower-case hex pairs. */
export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function spoofChain(tap: string): string {
  if (!TAP_RE.test(tap)) throw internal(`invalid TAP name ${JSON.stringify(tap)}`);
  return `${SPOOF_PREFIX}${tap}`;
}

function jumps(tap: string): Array<[string, string[]]> {
  const rule = ['-i', tap, '-j', spoofChain(tap)];
  return [
    ['FORWARD', rule],
    ['INPUT', rule],
  ];
}

/**
 * Lets the VM behind a TAP send only as itself: its MAC, its IPv4 address, ARP
 * about itself. Idempotent; replaces earlier rules of the TAP. FRESH (a TAP just
 * made, so no jumps to it exist yet) does it all in one ebtables-restore: it is
 * on every container's start path.
 */
export function protectEndpoint(tap: string, mac: string, ip: string, opts: { fresh?: boolean } = {}): void {
  const chain = spoofChain(tap);
  mac = mac.toLowerCase();
  if (!MAC_RE.test(mac)) throw internal(`invalid MAC address ${JSON.stringify(mac)}`);
  const octets = IPV4_RE.exec(ip);
  if (!octets || octets.slice(1).some((o) => Number(o) > 255)) throw internal(`invalid IPv4 address ${JSON.stringify(ip)}`);
  // One transaction: declaring the chain (re)creates it empty, so a running VM never goes unprotected.
  const script = [
    '*filter',
    `:${chain} RETURN`,
    `-A ${chain} -s ! ${mac} -j DROP`,
    `-A ${chain} -p IPv4 --ip-src ${ip} -j RETURN`,
    `-A ${chain} -p ARP --arp-htype 1 --arp-ptype IPv4 --arp-mac-src ${mac} --arp-ip-src ${ip} -j RETURN`,
    `-A ${chain} -j DROP`,
    // First in the base chains: an ACCEPT of someone else's must not skip ours.
    ...(opts.fresh ? jumps(tap).map(([base, rule]) => `-I ${base} 1 ${rule.join(' ')}`) : []),
    'COMMIT',
    '',
  ].join('\n');
  try {
    execFileSync('ebtables-restore', ['--noflush'], { input: script, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    throw internal(`ebtables-restore (anti-spoofing rules of ${tap}): ${stderr || (err as Error).message}`);
  }
  if (opts.fresh) return;
  for (const [base, rule] of jumps(tap)) if (!succeeds('ebtables', ['--check', base, ...rule])) run('ebtables', ['-I', base, '1', ...rule]);
}

/** Removes a TAP's anti-spoofing rules; nothing happens if it has none. */
export function unprotectEndpoint(tap: string): void {
  const chain = spoofChain(tap);
  // The usual case (one jump from each base chain) in one transaction; anything else the slow way.
  const script = ['*filter', ...jumps(tap).map(([base, rule]) => `-D ${base} ${rule.join(' ')}`), `-F ${chain}`, `-X ${chain}`, 'COMMIT', ''].join('\n');
  try {
    execFileSync('ebtables-restore', ['--noflush'], { input: script, stdio: ['pipe', 'ignore', 'ignore'] });
    return;
  } catch {
    // a jump missing or doubled, or no chain at all: below
  }
  for (const [base, rule] of jumps(tap)) {
    while (succeeds('ebtables', ['-D', base, ...rule])) {
      /* a jump added twice by racing daemons goes twice */
    }
  }
  if (succeeds('ebtables', ['-F', chain])) run('ebtables', ['-X', chain]);
}

/** TAPs that have anti-spoofing rules. */
export function protectedTaps(): string[] {
  const out = run('ebtables', ['-L']);
  return [...out.matchAll(new RegExp(`^Bridge chain: ${SPOOF_PREFIX}([^,\\s]+),`, 'gm'))].map((m) => m[1]!);
}

/**
 * Removes the rules of TAPs that are gone and not kept (left by a daemon that
 * crashed). TAPs that exist are left alone: they may be another daemon's.
 */
export function sweepProtections(keepTaps: Set<string>): void {
  for (const tap of protectedTaps()) if (!keepTaps.has(tap) && !linkExists(tap)) unprotectEndpoint(tap);
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
