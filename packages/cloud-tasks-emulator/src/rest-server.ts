// The REST/JSON transport (the clients' `fallback: 'rest'` mode, and curl), routed by the
// google.api.http bindings in the protos, plus the OIDC issuer's discovery document and keys.
// Requests and answers are proto3 JSON (fields by their JSON or proto names, unknown names
// refused: proto-json.ts); errors are {"error":{code,message,status,details}}. Browsers and
// foreign Host names are refused before anything is read (lockdown.ts says why).
import http from 'node:http';
import type protobuf from 'protobufjs';
import type { LogFn } from './context.ts';
import { ApiError, Code, codeName, httpStatusOf, invalidArgument, toApiError } from './errors.ts';
import type { BoundService, Handler } from './grpc-server.ts';
import { type HostPolicy, refusal } from './lockdown.ts';
import type { Signer } from './oidc.ts';
import { normalizeJsonNames } from './proto-json.ts';
import { fromJson, type HttpBinding, type MethodSpec, toJson } from './protos.ts';

const MAX_BODY_BYTES = 10 * 1024 * 1024;

interface Route {
  verb: string;
  regex: RegExp;
  /** Field paths (camelCase, dotted) captured by the regex groups, in order. */
  fields: string[];
  body: string | undefined;
  method: MethodSpec;
  handler: Handler | undefined;
}

export interface RestServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface RestOptions {
  host: string;
  port: number;
  services: BoundService[];
  signer: Signer;
  /** The issuer and base URL are known only once the port is. */
  issuer: () => string;
  baseUrl: () => string;
  /** Host names besides loopback and the bound address that requests may name in `Host`. */
  allowedHosts?: readonly string[];
  log: LogFn;
}

export async function startRestServer(options: RestOptions): Promise<RestServer> {
  const routes: Route[] = [];
  for (const { spec, handlers } of options.services) {
    for (const method of spec.methods) {
      for (const binding of method.http) routes.push({ ...compile(binding), method, handler: handlers[method.name] });
    }
  }
  let policy: HostPolicy | undefined;
  const server = http.createServer((req, res) => {
    // The issuer is known once the port is: its host (e.g. a container's name) is accepted too.
    policy ??= { bound: options.host, allowed: [...(options.allowedHosts ?? []), issuerHost(options.issuer())] };
    const refused = refusal(req, policy);
    if (refused) {
      options.log('warn', `REST request refused: ${refused.message}`, {
        method: req.method,
        path: req.url,
        origin: req.headers.origin,
      });
      res.setHeader('Connection', 'close');
      return sendJson(res, refused.status, {
        error: {
          code: refused.status,
          message: refused.message,
          status: refused.status === 403 ? 'PERMISSION_DENIED' : 'INVALID_ARGUMENT',
        },
      });
    }
    handle(req, res, routes, options).catch((err: unknown) => {
      options.log('error', 'REST request failed', { err: String(err) });
      if (!res.headersSent) sendError(res, toApiError(err));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Whatever is still open after a moment is cut, so close() never hangs on a client.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  routes: Route[],
  options: RestOptions,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://emulator');
  const verb = (req.method ?? 'GET').toLowerCase();
  if (verb === 'get') {
    const issuerDoc = issuerDocument(url.pathname, options);
    if (issuerDoc) return sendJson(res, 200, issuerDoc);
  }
  let route: Route | undefined;
  let match: RegExpExecArray | null = null;
  for (const candidate of routes) {
    if (candidate.verb !== verb) continue;
    match = candidate.regex.exec(url.pathname);
    if (match) {
      route = candidate;
      break;
    }
  }
  if (!route || !match) {
    return sendError(res, new ApiError(Code.NOT_FOUND, `No ${verb.toUpperCase()} ${url.pathname} in this emulator.`));
  }
  if (!route.handler) return sendError(res, new ApiError(Code.UNIMPLEMENTED, `${route.method.name} is not emulated.`));

  let request: Record<string, unknown>;
  try {
    const body = await readJson(req);
    request = buildRequest(route, match, url, body);
  } catch (err) {
    return sendError(
      res,
      err instanceof ApiError ? err : invalidArgument(`Invalid JSON payload received. ${String(err)}`),
    );
  }
  let object: Record<string, unknown>;
  try {
    object = fromJson(route.method.requestType, request);
  } catch (err) {
    return sendError(res, invalidArgument(`Invalid JSON payload received. ${(err as Error).message}`));
  }
  try {
    const result = await route.handler(object);
    const numericEnums = (url.searchParams.get('$alt') ?? '').includes('enum-encoding=int');
    sendJson(res, 200, toJson(route.method.responseType, result, numericEnums));
  } catch (err) {
    const apiError = toApiError(err);
    if (apiError.code === Code.INTERNAL) options.log('error', `${route.method.name} failed`, { err: String(err) });
    sendError(res, apiError);
  }
}

function issuerHost(issuer: string): string {
  try {
    return new URL(issuer).hostname;
  } catch {
    return '';
  }
}

function issuerDocument(pathname: string, options: RestOptions): unknown {
  switch (pathname) {
    case '/.well-known/openid-configuration':
      return options.signer.discovery(options.issuer(), options.baseUrl());
    case '/jwks':
      return options.signer.jwks();
    case '/certs':
      return options.signer.pemCerts();
    default:
      return undefined;
  }
}

/**
 * A path template as a regex: `{field=projects/*\/locations/*}` captures that pattern, `{field}`
 * one segment, `*` one segment, `**` the rest; a trailing `:verb` is literal.
 */
function compile(binding: HttpBinding): Pick<Route, 'verb' | 'regex' | 'fields' | 'body'> {
  const fields: string[] = [];
  let pattern = '';
  const template = binding.template;
  let i = 0;
  while (i < template.length) {
    const ch = template[i]!;
    if (ch === '{') {
      const end = template.indexOf('}', i);
      const inner = template.slice(i + 1, end);
      const eq = inner.indexOf('=');
      const field = eq < 0 ? inner : inner.slice(0, eq);
      const sub = eq < 0 ? '*' : inner.slice(eq + 1);
      fields.push(field.split('.').map(camel).join('.'));
      pattern += `(${segments(sub)})`;
      i = end + 1;
    } else {
      const next = template.indexOf('{', i);
      const literal = next < 0 ? template.slice(i) : template.slice(i, next);
      pattern += segments(literal);
      i = next < 0 ? template.length : next;
    }
  }
  return { verb: binding.verb, regex: new RegExp(`^${pattern}$`), fields, body: binding.body };
}

function segments(text: string): string {
  return text
    .split('/')
    .map((s) => (s === '**' ? '.+' : s === '*' ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
}

function camel(name: string): string {
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Path variables, the body (per the binding) and query parameters, merged into one proto3 JSON request. */
function buildRequest(route: Route, match: RegExpExecArray, url: URL, body: unknown): Record<string, unknown> {
  const type = route.method.requestType;
  const isObject = body !== null && typeof body === 'object' && !Array.isArray(body);
  let request: Record<string, unknown> = {};
  if (route.body === '*') request = isObject ? { ...(body as Record<string, unknown>) } : {};
  else if (route.body && body !== undefined) request[camel(route.body)] = body;
  route.fields.forEach((field, index) => {
    setPath(request, field.split('.'), decodeURIComponent(match[index + 1]!), false);
  });
  for (const [key, value] of url.searchParams) {
    // $alt, $prettyPrint, alt, key, fields… are system parameters, not request fields.
    if (key.startsWith('$') || key === 'alt' || key === 'prettyPrint' || key === 'key' || key === 'fields') continue;
    const path = key.split('.').map(camel);
    const field = fieldAt(type, path);
    if (!field) {
      throw invalidArgument(
        `Invalid JSON payload received. Unknown name ${JSON.stringify(key)}: Cannot bind query parameter. Field '${key}' could not be found in request message.`,
      );
    }
    setPath(request, path, coerce(field, value), field.repeated);
  }
  return normalizeJsonNames(type, request);
}

function fieldAt(type: protobuf.Type, path: string[]): protobuf.Field | undefined {
  let current: protobuf.Type | undefined = type;
  let field: protobuf.Field | undefined;
  for (const name of path) {
    if (!current) return undefined;
    field = current.fields[name];
    if (!field) return undefined;
    field.resolve();
    current = field.resolvedType && 'fields' in field.resolvedType ? (field.resolvedType as protobuf.Type) : undefined;
  }
  return field;
}

/** A query-string value in the JSON form proto3-json-serializer expects for that field. */
function coerce(field: protobuf.Field, value: string): unknown {
  if (field.resolvedType && !('fields' in field.resolvedType)) return /^\d+$/.test(value) ? Number(value) : value;
  switch (field.type) {
    case 'double':
    case 'float':
    case 'int32':
    case 'uint32':
    case 'sint32':
    case 'fixed32':
    case 'sfixed32':
      return Number(value);
    case 'bool':
      return value === 'true';
    default:
      return value;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown, repeated: boolean): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    if (child === null || typeof child !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  if (repeated) {
    const list = Array.isArray(node[last]) ? (node[last] as unknown[]) : [];
    list.push(value);
    node[last] = list;
  } else {
    node[last] = value;
  }
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(invalidArgument('Request payload too large.'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(invalidArgument(`Invalid JSON payload received. ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value ?? {});
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function sendError(res: http.ServerResponse, error: ApiError): void {
  const status = httpStatusOf(error.code);
  const body: Record<string, unknown> = { code: status, message: error.message, status: codeName(error.code) };
  if (error.details.length > 0) body.details = error.details;
  sendJson(res, status, { error: body });
}
