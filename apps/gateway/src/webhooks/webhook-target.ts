import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

// Where a webhook may go (SSRF): an http(s) URL whose host is in
// `webhooks.allow_hosts` when that list is set, and that resolves to no
// private, loopback, link-local or otherwise internal address, unless the
// host is listed. Checked at submit (400) and again at each delivery (DNS
// can change), and the delivery connects to the very address checked here,
// so a name that resolves elsewhere a moment later (DNS rebinding) gains
// nothing.

const INTERNAL = new BlockList();
for (const [network, bits] of [
  ['0.0.0.0', 8], // "this network"; 0.0.0.0 reaches the local host
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata services
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  INTERNAL.addSubnet(network, bits, 'ipv4');
}
for (const [network, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
] as const) {
  INTERNAL.addSubnet(network, bits, 'ipv6');
}

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, `::ffff:a00:1`) as the IPv4 address it is. */
function unmapped(address: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted?.[1]) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex?.[1] || !hex[2]) return address;
  const high = parseInt(hex[1], 16);
  const low = parseInt(hex[2], 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

/** True for the addresses a webhook may not reach unless its host is listed. */
export function isInternalAddress(address: string): boolean {
  const plain = unmapped(address);
  const family = isIP(plain);
  if (family === 0) return true; // not an address: never trusted
  return INTERNAL.check(plain, family === 4 ? 'ipv4' : 'ipv6');
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}
/** Resolves a host name to all its addresses (node's DNS lookup by default). */
export type HostLookup = (host: string) => Promise<ResolvedAddress[]>;

export const systemLookup: HostLookup = async (host) => {
  const found = await dnsLookup(host, { all: true, verbatim: true });
  return found.map((entry) => ({ address: entry.address, family: entry.family === 6 ? 6 : 4 }));
};

export type TargetCheck =
  | { ok: true; url: URL; host: string; address: ResolvedAddress }
  /** `temporary`: the host did not resolve (a DNS failure may pass); a delivery retries it. */
  | { ok: false; reason: string; temporary: boolean };

/** The host of a URL as allow_hosts lists it: lowercase, IPv6 without brackets, no trailing dot. */
export function hostOf(url: URL): string {
  return url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

/**
 * Whether a webhook may go to `raw`, and the address to connect to: the
 * first the host resolves to (every one of them must pass).
 */
export async function checkTarget(raw: string, allowHosts: readonly string[], lookup: HostLookup = systemLookup): Promise<TargetCheck> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'expected an http or https URL', temporary: false };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, reason: 'expected an http or https URL', temporary: false };
  const host = hostOf(url);
  const listed = allowHosts.includes(host);
  if (allowHosts.length > 0 && !listed) {
    return { ok: false, reason: `the host \`${host}\` is not in webhooks.allow_hosts`, temporary: false };
  }
  let addresses: ResolvedAddress[];
  const literal = isIP(host);
  if (literal) addresses = [{ address: host, family: literal === 6 ? 6 : 4 }];
  else {
    try {
      addresses = await lookup(host);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'no answer';
      return { ok: false, reason: `the host \`${host}\` does not resolve (${code})`, temporary: true };
    }
  }
  const first = addresses[0];
  if (!first) return { ok: false, reason: `the host \`${host}\` does not resolve`, temporary: true };
  if (!listed) {
    const internal = addresses.find((entry) => isInternalAddress(entry.address));
    if (internal) {
      return {
        ok: false,
        reason: `the host \`${host}\` ${internal.address === host ? 'is' : `resolves to ${internal.address},`} a private, loopback or link-local address (allowed only when listed in webhooks.allow_hosts)`,
        temporary: false,
      };
    }
  }
  return { ok: true, url, host, address: first };
}
