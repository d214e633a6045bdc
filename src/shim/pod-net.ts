/**
 * A pod VM in the network namespace CNI prepared, as Kata's "tcfilter" mode:
 * inside that namespace a TAP for QEMU is created and every frame is redirected
 * between the CNI interface (eth0, a veth) and the TAP with tc mirred, both ways.
 * The guest's eth0 takes the address, gateway and MAC CNI gave the veth, so the
 * pod has its CNI address and the bridge on the other side sees the same MAC.
 * QEMU runs in that namespace (vm/qemu/process.ts `inNetns`) to open its TAP.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { SandboxOptions } from '../sandbox/index.js';
import { Code, RpcError } from './ttrpc.js';

/** The TAP's name in the pod's namespace (its own namespace: no clash possible). */
export const POD_TAP = 'tap0_hb';
const CNI_IF = 'eth0';

function inNs(netns: string, args: string[]): string {
  try {
    return execFileSync('nsenter', [`--net=${netns}`, '--', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${args.join(' ')} in ${netns}: ${(e.stderr || e.message).trim()}`);
  }
}

interface IpAddr {
  ifname: string;
  address?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope?: string }>;
}

/** What CNI gave eth0 in NETNS: its IPv4 address, default gateway and MAC. */
function readCniInterface(netns: string): { ipv4: string; gateway: string; mac: string; mtu: number } {
  const [link] = JSON.parse(inNs(netns, ['ip', '-j', 'addr', 'show', 'dev', CNI_IF])) as Array<IpAddr & { mtu: number }>;
  const v4 = link?.addr_info?.find((a) => a.family === 'inet');
  if (!link?.address || !v4) throw new Error(`${CNI_IF} in ${netns} has no IPv4 address (is a CNI network configured?)`);
  const routes = JSON.parse(inNs(netns, ['ip', '-j', '-4', 'route', 'show', 'default'])) as Array<{ gateway?: string }>;
  const gateway = routes.find((r) => r.gateway)?.gateway;
  if (!gateway) throw new Error(`no default route in ${netns}`);
  return { ipv4: `${v4.local}/${v4.prefixlen}`, gateway, mac: link.address, mtu: link.mtu };
}

/** The nameserver the guest itself uses (CRI binds each container's resolv.conf over it). */
function hostNameserver(fallback: string): string {
  const m = /^nameserver\s+(\d+\.\d+\.\d+\.\d+)/m.exec(fs.readFileSync('/etc/resolv.conf', 'utf8'));
  return m?.[1] ?? fallback;
}

/**
 * Plumbs NETNS for a pod VM: the TAP and the redirects (idempotent: a second
 * call finds them). Returns the NIC backend and eth0's configuration in the guest.
 */
export function joinPodNetwork(netns: string): Required<Pick<SandboxOptions, 'net' | 'guestNet'>> {
  try {
    const cni = readCniInterface(netns);
    const links = JSON.parse(inNs(netns, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string }>;
    if (!links.some((l) => l.ifname === POD_TAP)) {
      inNs(netns, ['ip', 'tuntap', 'add', 'dev', POD_TAP, 'mode', 'tap']);
      inNs(netns, ['ip', 'link', 'set', POD_TAP, 'mtu', String(cni.mtu), 'up']);
      for (const [from, to] of [[CNI_IF, POD_TAP], [POD_TAP, CNI_IF]] as const) {
        inNs(netns, ['tc', 'qdisc', 'add', 'dev', from, 'ingress']);
        inNs(netns, ['tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to]);
      }
    }
    return {
      net: { forwards: [], tap: POD_TAP, netns },
      guestNet: { ipv4: cni.ipv4, gateway: cni.gateway, dns: hostNameserver(cni.gateway), mac: cni.mac },
    };
  } catch (err) {
    throw new RpcError(Code.Internal, `joining the pod network: ${(err as Error).message}`);
  }
}
