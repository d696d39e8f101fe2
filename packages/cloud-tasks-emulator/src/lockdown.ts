// Who may talk to the emulator's REST port. The emulator signs an OIDC token for whatever service
// account and audience a task names, so whoever can create a task can make the service believe
// Cloud Tasks sent it (a top-up, say). Programs on this machine are meant to; web pages open in
// the developer's browser are not, and they can reach 127.0.0.1 too:
// - a page can POST cross-site without asking first ("simple" requests: text/plain, form bodies,
//   no custom headers), but the browser then always adds an `Origin` header, and cannot send
//   `Content-Type: application/json` without a preflight (an OPTIONS request, also with Origin).
//   So any `Origin` is refused (403), and a body that is not declared JSON is refused (415).
// - DNS rebinding: a page on attacker.example re-resolves its own name to 127.0.0.1 and is then
//   "same origin" with the emulator, free to read answers; its requests still say
//   `Host: attacker.example`. So `Host` must name this machine's loopback (localhost, 127.x, ::1),
//   the address the server is bound to, the issuer's host, or a name the operator allowed. An IP
//   literal cannot be rebound, so when bound to every interface any IP literal is accepted (the
//   machine's own addresses are what other containers and hosts use). The port is not compared: a
//   browser reaches the port the server listens on (or a forward of it), so the port proves
//   nothing, and comparing it would break port-mapped containers.
// The official clients (gRPC, and REST with `fallback: 'rest'`, which sends application/json on
// every call), curl with a JSON content type, and the service fetching /jwks are not affected.
// The gRPC port needs no such check: it speaks only HTTP/2 without TLS, which browsers never
// send, and grpc-server.ts answers anything but a POST of application/grpc with 415.
import type http from 'node:http';
import { isIP } from 'node:net';

export interface HostPolicy {
  /** The address the server is bound to, as given (e.g. '127.0.0.1', '0.0.0.0', '::', 'localhost'). */
  bound: string;
  /** Further host names (no port) that `Host` may name, e.g. a container's service name. */
  allowed: readonly string[];
}

export interface Refusal {
  status: 403 | 415;
  message: string;
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** A bound address that only this machine can reach. */
export function isLoopbackAddress(host: string): boolean {
  const h = bareHost(host);
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h);
  return false;
}

function isWildcard(host: string): boolean {
  const h = bareHost(host);
  return h === '0.0.0.0' || h === '::' || h === '';
}

/** Lower case, without IPv6 brackets or a trailing dot. */
function bareHost(host: string): string {
  return host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
}

/** The host name of a Host header value: `name:port` → name, `[v6]:port` → v6. */
export function hostnameOf(header: string): string {
  const value = header.trim();
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    return end < 0 ? '' : bareHost(value.slice(0, end + 1));
  }
  const colon = value.lastIndexOf(':');
  return bareHost(colon < 0 ? value : value.slice(0, colon));
}

/** Whether a Host header names this server, per the policy above. */
export function hostAllowed(header: string | undefined, policy: HostPolicy): boolean {
  if (!header) return false;
  const name = hostnameOf(header);
  if (name === '') return false;
  if (isLoopbackAddress(name)) return true;
  const bound = bareHost(policy.bound);
  if (!isWildcard(bound) && name === bound) return true;
  if (isWildcard(bound) && isIP(name) !== 0) return true;
  return policy.allowed.some((allowed) => bareHost(allowed) === name);
}

/** Why a request must not reach the API (checked before its body is read), or undefined. */
export function refusal(req: http.IncomingMessage, policy: HostPolicy): Refusal | undefined {
  if (!hostAllowed(req.headers.host, policy)) {
    return {
      status: 403,
      message: `Host "${req.headers.host ?? ''}" does not name this emulator; expected localhost, a loopback address or the address it listens on (add a name with --allow-host).`,
    };
  }
  if (req.headers.origin !== undefined) {
    return {
      status: 403,
      message: 'Requests from web pages are refused (the request has an Origin header): use a client library or curl.',
    };
  }
  const method = (req.method ?? 'GET').toUpperCase();
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (BODY_METHODS.has(method) || hasBody) {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      return {
        status: 415,
        message: `Expected Content-Type: application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}.`,
      };
    }
  }
  return undefined;
}

/** The warning printed when the emulator listens on anything but loopback. */
export function exposureWarning(host: string, ports: { grpc: number; http: number }): string {
  const line = '!'.repeat(78);
  return [
    line,
    `The emulator listens on ${host} (gRPC ${ports.grpc}, REST ${ports.http}), not on loopback only.`,
    'Anyone who can reach this address can create tasks and scheduler jobs, and the emulator',
    'signs an OIDC token for whatever service account and audience a task names: a service that',
    'trusts this emulator will run those tasks as if Google Cloud Tasks had sent them (top-ups',
    'included). Browsers are refused, but programs on the network are not.',
    'Bind to 127.0.0.1 (the default) unless this runs in a container or on a network only you',
    'use, and never publish these ports beyond the machine.',
    line,
  ].join('\n');
}
