// Where webhooks may go. Only http(s), and never to loopback, private, link-local, multicast or
// unspecified addresses (cloud metadata at 169.254.169.254 included) unless configured otherwise.
// Every address a hostname resolves to is checked at connect time (the `lookup` the socket
// uses), so DNS rebinding between a check and the connection cannot slip through.
//
// Why not request-filtering-agent (3.2.1, evaluated for issue 11)? It does plug into the
// node:http/https requests deliver.ts makes (it is an http.Agent; it would not work with
// fetch/undici), and it also checks every resolved address at connect time. But it does not
// serve as well as this module:
// - No hostname allow-list: `allowIPAddressList` takes IPs and CIDRs only, while
//   WEBHOOK_ALLOWED_HOSTS also takes hostnames (`localhost`, `hooks.internal` in the tests).
//   IP entries are compared as raw strings, so `[::1]` is rejected as an "invalid CIDR".
// - It refuses every IPv4-mapped IPv6 address (ipaddr.js range `ipv4Mapped`), public ones too
//   (`::ffff:8.8.8.8`); we judge the embedded IPv4 address, as the unit tests expect.
// - It exports no address check, only the agent, so the API's create-time check of a literal
//   address (checkWebhookUrl, a 422 before anything is queued) would still need our own rules,
//   and the two could disagree (a URL accepted at create, refused at send).
// - Refusals are plain `Error`s with no code or class and their own wording ("DNS lookup … is
//   not allowed"). Our `forbidden` outcome would rest on matching that text, and the recorded
//   `error` would change from "… resolves to a forbidden address (…)" (asserted in tests, and
//   matched by migration 0007 when it classified old attempts).
// The address rules themselves agree: every forbidden case in the unit tests is refused by it too.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export interface WebhookTargetPolicy {
  /** WEBHOOK_ALLOW_PRIVATE: allow every address (development, tests). */
  allowPrivate: boolean;
  /** WEBHOOK_ALLOWED_HOSTS: hostnames, IP addresses or CIDR ranges allowed despite the rules. */
  allowedHosts: readonly string[];
}

export const DEFAULT_POLICY: WebhookTargetPolicy = { allowPrivate: false, allowedHosts: [] };

const forbidden = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  forbidden.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback, IPv4-compatible
  ['64:ff9b::', 96], // NAT64: embeds an IPv4 address
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  forbidden.addSubnet(net, prefix, 'ipv6');
}

/** `::ffff:a.b.c.d` / `::ffff:7f00:1` → `a.b.c.d`, else undefined. */
function mappedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted?.[1]) return dotted[1];
  const hex = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex?.[1] && hex[2]) {
    const hi = Number.parseInt(hex[1], 16);
    const lo = Number.parseInt(hex[2], 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

const stripBrackets = (host: string) =>
  host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;

/** True for an address webhooks must not reach (by the built-in rules, before any allow-list). */
export function isForbiddenAddress(address: string): boolean {
  const ip = stripBrackets(address).replace(/%.*$/, '');
  const family = isIP(ip);
  if (family === 4) return forbidden.check(ip, 'ipv4');
  if (family === 6) {
    const v4 = mappedIpv4(ip);
    if (v4) return forbidden.check(v4, 'ipv4');
    return forbidden.check(ip, 'ipv6');
  }
  return true; // not an address at all
}

function isAllowListed(policy: WebhookTargetPolicy, hostname: string, address: string): boolean {
  const host = stripBrackets(hostname).toLowerCase();
  const ip = stripBrackets(address);
  for (const entry of policy.allowedHosts) {
    const e = entry.trim().toLowerCase();
    if (!e) continue;
    if (e === host || stripBrackets(e) === ip) return true;
    const cidr = /^(.+)\/(\d+)$/.exec(e);
    const base = cidr?.[1] ? stripBrackets(cidr[1]) : undefined;
    if (cidr && base && isIP(base) && isIP(ip) === isIP(base)) {
      const list = new BlockList();
      const type = isIP(base) === 4 ? 'ipv4' : 'ipv6';
      list.addSubnet(base, Number(cidr[2]), type);
      if (list.check(ip, type)) return true;
    }
  }
  return false;
}

/** May a connection to `address` (resolved from `hostname`) go ahead under this policy? */
export function isAddressAllowed(policy: WebhookTargetPolicy, hostname: string, address: string): boolean {
  return policy.allowPrivate || !isForbiddenAddress(address) || isAllowListed(policy, hostname, address);
}

export class WebhookTargetForbidden extends Error {
  override name = 'WebhookTargetForbidden';
  readonly code = 'ERR_WEBHOOK_TARGET_FORBIDDEN';
}

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: string };

/**
 * What can be decided without DNS: the scheme, and a literal IP address in the URL (a socket
 * never calls `lookup` for those, so this check is the only one they get).
 */
export function checkWebhookUrl(raw: string, policy: WebhookTargetPolicy): UrlCheck {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'is not a URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, reason: 'must be http or https' };
  if (url.username || url.password) return { ok: false, reason: 'must not contain credentials' };
  const host = stripBrackets(url.hostname);
  if (isIP(host) && !isAddressAllowed(policy, host, host)) {
    return { ok: false, reason: `points at a forbidden address (${host})` };
  }
  return { ok: true, url };
}

/**
 * A `lookup` for http.request/net.connect that resolves every address of the hostname and
 * refuses the connection (before any packet is sent) when any of them is forbidden.
 */
export function guardedLookup(policy: WebhookTargetPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(
      hostname,
      { family: options.family ?? 0, hints: options.hints, all: true },
      (error, addresses) => {
        if (error) return callback(error, '', 0);
        const list = addresses as LookupAddress[];
        const refused = list.find((a) => !isAddressAllowed(policy, hostname, a.address));
        if (refused || list.length === 0) {
          const why = refused
            ? `${hostname} resolves to a forbidden address (${refused.address})`
            : `${hostname}: no address`;
          return callback(new WebhookTargetForbidden(why), '', 0);
        }
        if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, list);
        const first = list[0] as LookupAddress;
        callback(null, first.address, first.family);
      },
    );
  };
}

export function parseAllowedHosts(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
