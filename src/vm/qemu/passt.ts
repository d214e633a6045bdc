/**
 * The built-in (NAT) network through passt instead of QEMU's libslirp. QEMU
 * 7.2's user-mode network maps its gateway (10.0.2.2) to the host's loopback
 * with no switch to turn that off, so a container there reached every service
 * the host keeps on 127.0.0.1. passt is started with `--no-map-gw`: the guest
 * reaches the outside and the host's non-loopback addresses (as from Docker's
 * bridge) and nothing on the host's loopback. It runs as `nobody` in its own
 * namespaces (passt sandboxes itself), one per VM, connected to QEMU by a
 * socket pair (no path another local user could connect to), and exits when
 * QEMU closes its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NetSpec } from '../driver.js';
import { USER_NET } from './args.js';

export const PASST = process.env.HYPERBOX_PASST === 'off' ? undefined : ['/usr/bin/passt', '/usr/local/bin/passt'].find((p) => fs.existsSync(p));

/** The fd on which QEMU finds its end of the socket pair. */
export const PASST_FD = 3;

/** passt's command line for a VM with NET (pure): the guest's addresses, DNS, published ports. */
export function passtArgs(net: NetSpec): string[] {
  const args = ['--foreground', '--quiet', '--one-off', '--fd', String(PASST_FD), '--ipv4-only', '--no-map-gw'];
  args.push('--address', USER_NET.guest, '--netmask', String(USER_NET.prefix), '--gateway', USER_NET.gateway);
  // Queries to the built-in DNS address go to the host's resolver; no DNS in DHCP (the agent writes resolv.conf).
  args.push('--dns-forward', USER_NET.dns, '--no-dhcp-dns');
  for (const proto of ['tcp', 'udp'] as const) {
    const specs = net.forwards
      .filter((f) => f.proto === proto)
      .map((f) => {
        if (!/^[0-9a-fA-F.:]*$/.test(f.hostIp)) throw new Error(`bad host address ${f.hostIp}`);
        const addr = f.hostIp && f.hostIp !== '0.0.0.0' ? `${f.hostIp}/` : '';
        return `${addr}${f.hostPort}:${f.guestPort}`;
      });
    for (const spec of specs) args.push(proto === 'tcp' ? '--tcp-ports' : '--udp-ports', spec);
  }
  if (!net.forwards.some((f) => f.proto === 'tcp')) args.push('--tcp-ports', 'none');
  if (!net.forwards.some((f) => f.proto === 'udp')) args.push('--udp-ports', 'none');
  return args;
}

/**
 * Starts passt for the VM in RUNDIR; the returned socket is QEMU's end of the
 * pair (pass it as QEMU's fd 3, then destroy it here).
 */
export function startPasst(runDir: string, net: NetSpec): { passt: ChildProcess; qemuEnd: NonNullable<ChildProcess['stdio'][3]> } {
  const log = fs.openSync(path.join(runDir, 'passt.log'), 'w');
  try {
    // Node makes a 'pipe' stdio entry a unix socket pair: passt gets one end as fd 3.
    const passt = spawn(PASST!, passtArgs(net), { detached: true, stdio: ['ignore', log, log, 'pipe'] });
    const qemuEnd = passt.stdio[3];
    if (!qemuEnd || passt.pid === undefined) throw new Error('cannot start passt');
    passt.on('error', () => undefined);
    passt.unref();
    return { passt, qemuEnd };
  } finally {
    fs.closeSync(log);
  }
}

/** The host's IPv4 address on its default route: where a passt guest reaches the host (`host-gateway`). */
export function hostAddress(): string | undefined {
  let iface: string | undefined;
  try {
    // /proc/net/route: Iface, Destination (hex), ...; the default route has destination 0.
    iface = fs
      .readFileSync('/proc/net/route', 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === '00000000')?.[0];
  } catch {
    /* no procfs route table */
  }
  const ifaces = os.networkInterfaces();
  const pick = (name: string) => ifaces[name]?.find((x) => x.family === 'IPv4' && !x.internal)?.address;
  return (iface && pick(iface)) || Object.keys(ifaces).map(pick).find(Boolean);
}
