/** IPv4 arithmetic of bridge networks: addresses as numbers, subnet overlap, the choice of a free address. */

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function overlaps(aNet: number, aPrefix: number, bNet: number, bPrefix: number): boolean {
  const p = Math.min(aPrefix, bPrefix);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return ((aNet & mask) >>> 0) === ((bNet & mask) >>> 0);
}

/** WANTED if it is a free host address of NET's subnet (not its gateway, not in USED), else the first free one, or undefined. */
export function freeAddress(net: { Subnet: string; Gateway: string }, used: Set<string>, wanted?: string): string | undefined {
  const base = ipToInt(net.Subnet.split('/')[0]!);
  const size = 2 ** (32 - Number(net.Subnet.split('/')[1]));
  const gw = ipToInt(net.Gateway);
  const free = (n: number) => n > base && n < base + size - 1 && n !== gw && !used.has(intToIp(n));
  if (wanted && /^\d+\.\d+\.\d+\.\d+$/.test(wanted) && free(ipToInt(wanted))) return wanted;
  for (let n = base + 1; n < base + size - 1; n++) if (free(n)) return intToIp(n);
  return undefined;
}
