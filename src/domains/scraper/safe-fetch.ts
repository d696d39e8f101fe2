// Fetches a user-supplied URL without letting it reach private networks (SSRF), for too long, or
// for too many bytes; decodes the page with its declared or sniffed charset. The rules, and why
// they are checked on the connected socket: ARCHITECTURE.md ("SSRF is checked where the socket
// connects") and docs/posts.md.
import dns from 'node:dns';
import net from 'node:net';
import { decodeBuffer } from 'encoding-sniffer';
import { ResultType, Sniffer } from 'encoding-sniffer/sniffer';
import ipaddr from 'ipaddr.js';
import type { Agent, buildConnector } from 'undici';
import { lazyRequire } from '../../lazy-module.ts';

// undici (its own fetch, for the connector below) loads with the first page fetched, not at start.
const undici = lazyRequire<typeof import('undici')>('undici');

export type LookupFunction = typeof dns.lookup;

export interface SafeFetchOptions {
  /** Skip every address check and allow any port (SCRAPER_ALLOW_PRIVATE_NETWORKS; local development). */
  allowPrivateNetworks?: boolean;
  /** Ports a URL may name (Default: [80, 443]). Ignored when allowPrivateNetworks is set. */
  allowedPorts?: number[];
  /** Decoded body bytes at most (Default: 2_000_000). Counted after decompression. */
  maxBytes?: number;
  /** For the whole fetch, redirects included (Default: 15_000). */
  timeoutMs?: number;
  /** Redirects followed at most (Default: 5). */
  maxRedirects?: number;
  userAgent?: string;
  /** Replaces dns.lookup (tests). Its answers are filtered like the real ones. */
  lookup?: LookupFunction;
  /**
   * Addresses allowed although not global unicast, as CIDRs (e.g. ['127.0.0.2/32']). For tests that
   * need one local server reachable while every other private address stays blocked; never config.
   */
  allowCidrs?: string[];
}

export interface FetchedPage {
  /** The URL as requested. */
  url: string;
  /** The URL of the page finally read (after redirects). */
  finalUrl: string;
  status: number;
  /** The media type, lower case, without parameters (e.g. 'text/html'). */
  contentType: string;
  /** The encoding the body was decoded with (e.g. 'UTF-8', 'windows-1252', 'Shift_JIS'). */
  charset: string;
  html: string;
  /** Body bytes read (decompressed). */
  bytes: number;
  /** Each redirect target followed, in order; empty when none. finalUrl is the last one. */
  redirects: string[];
}

export type RefusalReason =
  | 'invalid_url'
  | 'unsupported_scheme'
  | 'port_not_allowed'
  | 'credentials_in_url'
  | 'blocked_address'
  | 'too_many_redirects'
  | 'not_html'
  | 'too_large'
  | 'timeout'
  | 'http_error'
  | 'network_error';

/** Why a URL was not fetched: `reason` for code, `userMessage` for the WhatsApp user, `retryable` for the task. */
export class FetchRefusedError extends Error {
  readonly reason: RefusalReason;
  readonly retryable: boolean;
  /** The HTTP status, for http_error. */
  readonly status?: number;
  readonly userMessage: string;
  /** The URL being fetched when refused (a redirect target, possibly). */
  readonly url: string;
  constructor(
    reason: RefusalReason,
    message: string,
    details: { url: string; retryable?: boolean; status?: number; userMessage?: string; cause?: unknown },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'FetchRefusedError';
    this.reason = reason;
    this.url = details.url;
    this.retryable = details.retryable ?? false;
    if (details.status !== undefined) this.status = details.status;
    this.userMessage = details.userMessage ?? USER_MESSAGES[reason];
  }
}

const USER_MESSAGES: Record<RefusalReason, string> = {
  invalid_url: "That doesn't look like a web address I can open. Please send a full link starting with https://.",
  unsupported_scheme: 'I can only open web pages: links starting with http:// or https://.',
  port_not_allowed: "That link uses an unusual port, so I won't open it. Links on the usual web ports work.",
  credentials_in_url: "That link contains a username or password, so I won't open it. Please send it without them.",
  blocked_address: "That address points to a private network, so I can't fetch it.",
  too_many_redirects: 'That link redirects too many times, so I gave up following it.',
  not_html: "That link isn't a web page (it may be a file or an image), so I can't read it.",
  too_large: 'That page is too large for me to read.',
  timeout: 'That site took too long to answer. Please try again later.',
  http_error: 'That site answered with an error, so I could not read the page.',
  network_error: "I couldn't reach that site. Please check the link, or try again later.",
};

function httpErrorMessage(status: number): string {
  if (status === 404 || status === 410) return `That page wasn't found (error ${status}). Please check the link.`;
  if (status === 401 || status === 403) return `That site doesn't let me read the page (error ${status}).`;
  if (status === 408 || status === 429) return `That site is busy right now (error ${status}). Please try again later.`;
  if (status >= 500) return `That site is having trouble right now (error ${status}). Please try again later.`;
  return `That site answered with an error (${status}), so I could not read the page.`;
}

const DEFAULTS = {
  allowedPorts: [80, 443],
  maxBytes: 2_000_000,
  timeoutMs: 15_000,
  maxRedirects: 5,
  userAgent: 'WhatsAppContentBot/0.1 (fetches pages that users send it)',
};
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);
// Only 2000::/3 is global unicast IPv6; ipaddr.js calls e.g. IPv4-compatible ::7f00:1 'unicast'.
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/** Thrown inside the connector (and by lookup) when an address is refused; mapped to blocked_address. */
class BlockedAddressError extends Error {
  readonly code = 'ESSRF';
  readonly address: string;
  constructor(host: string, address: string) {
    super(host === address ? `blocked address ${address}` : `blocked address ${address} for ${host}`);
    this.name = 'BlockedAddressError';
    this.address = address;
  }
}

type AddressCheck = (address: string) => boolean;

/** True when `address` (an IP literal) is global unicast or in one of `allowCidrs`. Unparsable: false. */
export function isPublicAddress(address: string, allowCidrs: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]> = []) {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return false;
  }
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  for (const [range, bits] of allowCidrs) {
    if (parsed.kind() === range.kind() && parsed.match(range, bits)) return true;
  }
  if (parsed.range() !== 'unicast') return false;
  if (parsed.kind() === 'ipv6') return parsed.match(GLOBAL_UNICAST_V6);
  return true;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** dns.lookup that fails (ESSRF) when any answer is refused, so a name cannot smuggle a private address. */
function filteringLookup(base: LookupFunction, allowed: AddressCheck): LookupFunction {
  type Callback = (err: Error | null, address?: string | dns.LookupAddress[], family?: number) => void;
  const lookup = (hostname: string, options: dns.LookupOptions, callback: Callback) => {
    const answered: Callback = (err, address, family) => {
      if (err || address === undefined) return callback(err ?? new Error(`no address for ${hostname}`));
      const answers = Array.isArray(address) ? address : [{ address }];
      const refused = answers.find((a) => !allowed(a.address));
      if (refused) return callback(new BlockedAddressError(hostname, refused.address));
      callback(null, address, family);
    };
    (base as unknown as (h: string, o: dns.LookupOptions, cb: Callback) => void)(hostname, options, answered);
  };
  return lookup as unknown as LookupFunction;
}

/**
 * An Agent whose every connection is checked: an IP-literal host before connecting, a name through
 * the filtering lookup, and the connected peer's address again before any HTTP byte is written (a
 * second fence should a lookup path ever be bypassed).
 */
function guardedAgent(allowed: AddressCheck | null, lookup: LookupFunction, timeoutMs: number, maxBytes: number) {
  const { Agent, buildConnector } = undici();
  const base = buildConnector({
    timeout: Math.min(timeoutMs, 10_000),
    ...(allowed ? { lookup: filteringLookup(lookup, allowed) } : { lookup }),
  });
  const connect: buildConnector.connector = (options, callback) => {
    if (allowed) {
      const host = stripBrackets(options.hostname);
      if (net.isIP(host) && !allowed(host)) return callback(new BlockedAddressError(host, host), null);
    }
    base(options, (err, socket) => {
      if (err || !socket) return callback(err ?? new Error('no socket'), null);
      const peer = socket.remoteAddress;
      if (allowed && (!peer || !allowed(peer))) {
        socket.destroy();
        return callback(new BlockedAddressError(options.hostname, peer ?? 'unknown'), null);
      }
      callback(null, socket);
    });
  };
  return new Agent({
    connect,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    // A backstop on the bytes read from the wire; the decoded bytes are counted in readBody.
    maxResponseSize: maxBytes + 64 * 1024,
  });
}

export interface SafeFetcher {
  fetch(url: string, opts?: { signal?: AbortSignal }): Promise<FetchedPage>;
  close(): Promise<void>;
}

export function createSafeFetcher(options: SafeFetchOptions = {}): SafeFetcher {
  const allowPrivate = options.allowPrivateNetworks ?? false;
  const allowedPorts = new Set(options.allowedPorts ?? DEFAULTS.allowedPorts);
  const maxBytes = options.maxBytes ?? DEFAULTS.maxBytes;
  const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
  const maxRedirects = options.maxRedirects ?? DEFAULTS.maxRedirects;
  const userAgent = options.userAgent ?? DEFAULTS.userAgent;
  const cidrs = (options.allowCidrs ?? []).map((c) => ipaddr.parseCIDR(c));
  const allowed: AddressCheck | null = allowPrivate ? null : (address) => isPublicAddress(address, cidrs);
  const lookup = options.lookup ?? dns.lookup;
  let agent: Agent | undefined; // made on the first fetch

  /** The checks that need no network: scheme, credentials, port, an IP-literal or localhost host. */
  function checkUrl(raw: string | URL, base?: URL): URL {
    let url: URL;
    try {
      url = new URL(raw, base);
    } catch (cause) {
      throw new FetchRefusedError('invalid_url', `not a valid URL: ${String(raw).slice(0, 200)}`, {
        url: String(raw),
        cause,
      });
    }
    const href = url.href;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FetchRefusedError('unsupported_scheme', `scheme ${url.protocol} is not http or https`, { url: href });
    }
    if (url.username || url.password) {
      throw new FetchRefusedError('credentials_in_url', 'the URL carries credentials', { url: href });
    }
    if (!url.hostname) throw new FetchRefusedError('invalid_url', 'the URL has no host', { url: href });
    if (allowPrivate) return url;
    // new URL() has already normalised 2130706433, 0x7f.1 and friends to dotted quads.
    const host = stripBrackets(url.hostname);
    if (net.isIP(host) && !allowed?.(host)) {
      throw new FetchRefusedError('blocked_address', `blocked address ${host}`, { url: href });
    }
    const name = host.toLowerCase().replace(/\.$/, '');
    if (name === 'localhost' || name.endsWith('.localhost')) {
      throw new FetchRefusedError('blocked_address', `blocked host ${host}`, { url: href });
    }
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    if (!allowedPorts.has(port)) {
      throw new FetchRefusedError('port_not_allowed', `port ${port} is not allowed`, { url: href });
    }
    return url;
  }

  async function fetchPage(requested: string, callerSignal?: AbortSignal): Promise<FetchedPage> {
    let url = checkUrl(requested);
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = callerSignal ? AbortSignal.any([deadline, callerSignal]) : deadline;
    const redirects: string[] = [];
    try {
      for (;;) {
        agent ??= guardedAgent(allowed, lookup, timeoutMs, maxBytes);
        const response = await undici().fetch(url, {
          dispatcher: agent,
          redirect: 'manual',
          signal,
          headers: {
            'user-agent': userAgent,
            accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.1',
          },
        });
        const location = response.headers.get('location');
        if (REDIRECT_STATUSES.has(response.status) && location !== null) {
          await response.body?.cancel();
          if (redirects.length >= maxRedirects) {
            throw new FetchRefusedError('too_many_redirects', `more than ${maxRedirects} redirects`, { url: url.href });
          }
          url = checkUrl(location, url);
          redirects.push(url.href);
          continue;
        }
        if (response.status >= 300) {
          await response.body?.cancel();
          const status = response.status;
          const retryable = status >= 500 || status === 408 || status === 429;
          throw new FetchRefusedError('http_error', `HTTP ${status}`, {
            url: url.href,
            status,
            retryable,
            userMessage: httpErrorMessage(status),
          });
        }
        const header = response.headers.get('content-type') ?? '';
        const contentType = header.split(';')[0]!.trim().toLowerCase();
        if (!HTML_TYPES.has(contentType)) {
          await response.body?.cancel();
          throw new FetchRefusedError('not_html', `content type ${contentType || '(none)'} is not HTML`, {
            url: url.href,
          });
        }
        const declared = Number(response.headers.get('content-length'));
        if (declared > maxBytes) {
          await response.body?.cancel();
          throw tooLarge(url.href, `content-length ${declared} exceeds ${maxBytes} bytes`);
        }
        const body = await readBody(response.body, maxBytes, url.href);
        const { html, charset } = decodeHtml(body, header);
        return {
          url: requested,
          finalUrl: url.href,
          status: response.status,
          contentType,
          charset,
          html,
          bytes: body.length,
          redirects,
        };
      }
    } catch (err) {
      if (err instanceof FetchRefusedError) throw err;
      // The caller cancelled: not a refusal, so its own reason goes back up.
      if (callerSignal?.aborted && !deadline.aborted) throw callerSignal.reason;
      throw classify(err, url.href, deadline.aborted);
    }
  }

  return {
    fetch: (url, opts) => fetchPage(url, opts?.signal),
    close: async () => {
      await agent?.close();
    },
  };
}

function tooLarge(url: string, message: string): FetchRefusedError {
  return new FetchRefusedError('too_large', message, { url });
}

async function readBody(body: ReadableStream<Uint8Array> | null, maxBytes: number, url: string): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(url, `body exceeds ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}

function charsetParameter(contentType: string): string | undefined {
  const match = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType);
  const label = match?.[1] ?? match?.[2];
  return label ? label.trim() : undefined;
}

/**
 * Decodes an HTML body: BOM, then the Content-Type header's charset, then <meta charset> in the
 * first 1024 bytes (the WHATWG order, via encoding-sniffer). With no declaration at all the standard
 * says windows-1252; a body that is valid UTF-8 is read as UTF-8 instead, since most undeclared
 * pages today are.
 */
export function decodeHtml(body: Uint8Array, contentType?: string | null): { html: string; charset: string } {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const transportLabel = contentType ? charsetParameter(contentType) : undefined;
  const sniffer = new Sniffer(transportLabel ? { transportLayerEncodingLabel: transportLabel } : {});
  sniffer.write(bytes);
  let charset = sniffer.encoding;
  if (sniffer.resultType === ResultType.DEFAULT && isUtf8(bytes)) charset = 'UTF-8';
  return { html: decodeBuffer(bytes, { userEncoding: charset }), charset };
}

function isUtf8(body: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(body);
    return true;
  } catch {
    return false;
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps what fetch threw (usually TypeError('fetch failed') with the cause inside) to a refusal. */
function classify(err: unknown, url: string, deadlinePassed: boolean): FetchRefusedError {
  const causes: unknown[] = [];
  for (let e: unknown = err; e && causes.length < 8; e = (e as { cause?: unknown }).cause) causes.push(e);
  const blocked = causes.find((e) => e instanceof BlockedAddressError);
  if (blocked) {
    return new FetchRefusedError('blocked_address', (blocked as Error).message, { url, cause: err });
  }
  const codes = causes.map((e) => (e as { code?: unknown }).code);
  if (deadlinePassed || codes.some((c) => typeof c === 'string' && TIMEOUT_CODES.has(c))) {
    return new FetchRefusedError('timeout', 'the site did not answer in time', { url, retryable: true, cause: err });
  }
  if (codes.includes('UND_ERR_RES_EXCEEDED_MAX_SIZE')) {
    return new FetchRefusedError('too_large', 'response exceeds the size limit', { url, cause: err });
  }
  const last = causes[causes.length - 1];
  const detail = last instanceof Error ? last.message : String(last);
  return new FetchRefusedError('network_error', `network error: ${detail}`, { url, retryable: true, cause: err });
}
