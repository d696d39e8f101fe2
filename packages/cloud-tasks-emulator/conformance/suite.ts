// A conformance suite for Cloud Tasks (v2, v2beta3) and Cloud Scheduler (v1) emulators, pointed at
// one by address. Every case in cases/*.json is run over up to three transports: Google's official
// Node clients over gRPC, the same clients over REST (`fallback: 'rest'`), and plain HTTP with JSON
// bodies (as curl or Python's discovery client sends them). The expected answers are data, written
// from the recorded behaviour of the real services; README.md describes the case format.
//
// It imports only Google's client libraries (and google-gax / google-auth-library, which they are
// built on and which an emulator user needs to point them anywhere), jose and Node's built-ins:
// nothing of any emulator, so any emulator can be checked with it.
//
//   node suite.ts --grpc 127.0.0.1:8123 --http http://127.0.0.1:8124 [--preset-queue NAME] [options]
import { randomBytes, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient, v2beta3 } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';
import { decodeProtectedHeader, jwtVerify } from 'jose';

export type Transport = 'grpc' | 'rest' | 'http';
export const TRANSPORTS: Transport[] = ['grpc', 'rest', 'http'];

export interface SuiteOptions {
  /** The emulator's gRPC address, `host:port`; needed for the grpc transport. */
  grpc?: string;
  /** The emulator's REST base URL, `http://host:port`; needed for rest, http and token checks. */
  http?: string;
  project?: string;
  location?: string;
  /** A queue the emulator was started with (`--queue`); the cases that need one are skipped without. */
  presetQueue?: string;
  /** Transports to run; by default every one whose address is given. */
  transports?: Transport[];
  /** Run only the cases with one of these ids or tags. */
  only?: string[];
  /** Leave out the cases with one of these ids or tags. */
  skip?: string[];
  /** Behaviours of the real service this emulator was started without (see `requires` in README.md). */
  without?: string[];
  /** The host name the emulator reaches this process at, for the dispatch target (127.0.0.1). */
  targetHost?: string;
  /** How long a case may wait for a dispatch or for a state to be reached (ms). */
  waitMs?: number;
  /** The cases to run; by default every file in cases/. */
  cases?: Case[];
  /** Called after each case, e.g. to print it. */
  onResult?: (result: CaseResult) => void;
}

export interface CaseResult {
  id: string;
  transport: Transport;
  title: string;
  ok: boolean;
  /** Why the case was not run, when it was not. */
  skipped?: string;
  errors: string[];
  ms: number;
}

export interface SuiteReport {
  results: CaseResult[];
  passed: number;
  failed: number;
  skipped: number;
  ms: number;
}

// ---- The case format (README.md explains each field) ----

export interface Case {
  id: string;
  title: string;
  source: string;
  transports?: Transport[];
  tags?: string[];
  requires?: string[];
  target?: { replies?: (number | { status: number; headers?: Record<string, string> })[] };
  steps: Step[];
}

export interface Step {
  name?: string;
  call?: { api?: Api; method: string; request?: unknown };
  http?: { method: string; path: string; body?: unknown; headers?: Record<string, string> };
  expect?: Expect;
  save?: Record<string, string>;
  repeatUntilMs?: number;
  received?: { count: number; requests?: ReceivedExpect[] };
}

type Api = 'tasks' | 'tasks.v2beta3' | 'scheduler';

interface Expect {
  /** The shape of a client result (grpc, rest); used for http too when `json` is absent. */
  result?: unknown;
  /** The shape of an HTTP JSON answer; used for the clients too when `result` is absent. */
  json?: unknown;
  /** The HTTP status of a successful plain-HTTP answer (200). */
  status?: number;
  error?: { code: number; message?: unknown; details?: unknown[]; httpStatus?: number };
}

interface ReceivedExpect {
  method?: string;
  path?: string;
  headers?: Record<string, unknown>;
  serviceHeaders?: Record<string, unknown>;
  absentHeaders?: string[];
  body?: string;
  token?: { audience: string; claims?: Record<string, unknown> };
}

// google/rpc/code.proto: names and HTTP mapping.
const CODES: Record<number, [string, number]> = {
  0: ['OK', 200],
  1: ['CANCELLED', 499],
  2: ['UNKNOWN', 500],
  3: ['INVALID_ARGUMENT', 400],
  4: ['DEADLINE_EXCEEDED', 504],
  5: ['NOT_FOUND', 404],
  6: ['ALREADY_EXISTS', 409],
  7: ['PERMISSION_DENIED', 403],
  8: ['RESOURCE_EXHAUSTED', 429],
  9: ['FAILED_PRECONDITION', 400],
  10: ['ABORTED', 409],
  11: ['OUT_OF_RANGE', 400],
  12: ['UNIMPLEMENTED', 501],
  13: ['INTERNAL', 500],
  14: ['UNAVAILABLE', 503],
  15: ['DATA_LOSS', 500],
  16: ['UNAUTHENTICATED', 401],
};

const CALL_OPTIONS = { timeout: 15_000, maxRetries: 0 };

const CASES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cases');

/** Every case in a folder of JSON files (`{ "cases": [...] }` each), checked for what a runner needs. */
export function loadCases(dir = CASES_DIR): Case[] {
  const cases: Case[] = [];
  const ids = new Set<string>();
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const parsed = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { cases?: Case[] };
    for (const c of parsed.cases ?? []) {
      const where = `${file}: case ${c.id ?? '(no id)'}`;
      if (!/^[a-z0-9][a-z0-9-]{0,59}$/.test(c.id ?? '')) throw new Error(`${where}: id must be [a-z0-9-], 60 at most`);
      if (ids.has(c.id)) throw new Error(`${where}: the id is used twice`);
      if (!c.title || !c.source) throw new Error(`${where}: title and source are required`);
      if (!Array.isArray(c.steps) || c.steps.length === 0) throw new Error(`${where}: no steps`);
      for (const t of c.transports ?? TRANSPORTS) {
        if (!TRANSPORTS.includes(t)) throw new Error(`${where}: unknown transport ${t}`);
      }
      for (const [i, s] of c.steps.entries()) {
        const kinds = [s.call, s.http, s.received].filter((k) => k !== undefined).length;
        if (kinds === 0 || (s.received && kinds > 1)) {
          throw new Error(`${where}, step ${i + 1}: give call and/or http, or received alone`);
        }
      }
      ids.add(c.id);
      cases.push(c);
    }
  }
  return cases;
}

// ---- Running ----

export async function runSuite(options: SuiteOptions): Promise<SuiteReport> {
  const started = performance.now();
  const transports =
    options.transports ??
    TRANSPORTS.filter((t) => (t === 'grpc' ? options.grpc !== undefined : options.http !== undefined));
  for (const t of transports) {
    if (t === 'grpc' && !options.grpc) throw new Error('the grpc transport needs --grpc host:port');
    if (t !== 'grpc' && !options.http) throw new Error(`the ${t} transport needs --http http://host:port`);
  }
  await reachable(options, transports);
  const cases = options.cases ?? loadCases();
  const run = `cf${randomBytes(3).toString('hex')}`;
  const target = await startTarget(options.targetHost ?? '127.0.0.1');
  const clients = new Clients(options);
  const results: CaseResult[] = [];
  try {
    for (const transport of transports) {
      for (const c of cases) {
        const result = await runCase(c, transport, { options, run, target, clients });
        results.push(result);
        options.onResult?.(result);
      }
    }
  } finally {
    await Promise.all([clients.close(), target.close()]);
  }
  return {
    results,
    passed: results.filter((r) => r.ok && !r.skipped).length,
    failed: results.filter((r) => !r.ok).length,
    skipped: results.filter((r) => r.skipped).length,
    ms: Math.round(performance.now() - started),
  };
}

/** Fails at once, with the address, when the emulator is not listening (rather than per case, after retries). */
async function reachable(options: SuiteOptions, transports: Transport[]): Promise<void> {
  const addresses = new Set<string>();
  if (transports.includes('grpc')) addresses.add(`grpc ${options.grpc}`);
  if (transports.some((t) => t !== 'grpc')) addresses.add(`http ${new URL(options.http!).host}`);
  for (const entry of addresses) {
    const address = entry.slice(5);
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1) || 80);
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host, port, timeout: 5000 }, () => {
        socket.destroy();
        resolve();
      });
      const fail = (why: string) => {
        socket.destroy();
        reject(new Error(`nothing answers at ${entry} (${why}): is the emulator running there?`));
      };
      socket.once('error', (err) => fail(err.message));
      socket.once('timeout', () => fail('timed out'));
    });
  }
}

interface RunContext {
  options: SuiteOptions;
  run: string;
  target: Target;
  clients: Clients;
}

function skipReason(c: Case, transport: Transport, options: SuiteOptions): string | undefined {
  const labels = [c.id, ...(c.tags ?? [])];
  if (!(c.transports ?? TRANSPORTS).includes(transport)) return `not a ${transport} case`;
  if (options.only?.length && !labels.some((l) => options.only!.includes(l))) return 'not selected';
  if (options.skip?.some((s) => labels.includes(s))) return 'skipped by request';
  for (const need of c.requires ?? []) {
    if (need === 'preset-queue' && !options.presetQueue) return 'no --preset-queue given';
    if (options.without?.includes(need)) return `the emulator runs without ${need}`;
  }
  return undefined;
}

async function runCase(c: Case, transport: Transport, ctx: RunContext): Promise<CaseResult> {
  const started = performance.now();
  const base = { id: c.id, transport, title: c.title };
  const skipped = skipReason(c, transport, ctx.options);
  if (skipped) return { ...base, ok: true, skipped, errors: [], ms: 0 };
  const project = ctx.options.project ?? 'conformance';
  const location = ctx.options.location ?? 'us-central1';
  // Unique per run, transport and case, so a second run against the same emulator starts afresh.
  const prefix = `${ctx.run}-${transport[0]}-${c.id}`;
  const route = ctx.target.route(c.target?.replies ?? []);
  const scope: Scope = {
    parent: `projects/${project}/locations/${location}`,
    project,
    location,
    prefix,
    presetQueue: ctx.options.presetQueue ?? '',
    target: route.url,
    now: Date.now(),
    vars: {},
  };
  const errors: string[] = [];
  try {
    for (const [i, step] of c.steps.entries()) {
      const label = `step ${i + 1}${step.name ? ` (${step.name})` : ''}`;
      const problems = await runStep(step, transport, scope, route, ctx);
      if (problems.length > 0) {
        errors.push(...problems.map((p) => `${label}: ${p}`));
        break;
      }
    }
  } catch (err) {
    errors.push(`unexpected: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    route.close();
    await cleanup(scope, ctx).catch(() => {});
  }
  return { ...base, ok: errors.length === 0, errors, ms: Math.round(performance.now() - started) };
}

async function runStep(step: Step, transport: Transport, scope: Scope, route: Route, ctx: RunContext) {
  if (step.received) return checkReceived(step.received, scope, route, ctx);
  const waitMs = step.repeatUntilMs ?? 0;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const observed = await perform(step, transport, scope, ctx);
    const problems = judge(step, observed, scope);
    if (problems.length === 0) {
      for (const [name, at] of Object.entries(step.save ?? {})) scope.vars[name] = String(dig(observed.value, at));
      return [];
    }
    if (Date.now() >= deadline) return problems;
    // The state awaited (a task finished, say) can only be seen by asking again: a bounded poll.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---- Placeholders ----

interface Scope {
  parent: string;
  project: string;
  location: string;
  prefix: string;
  presetQueue: string;
  target: string;
  now: number;
  vars: Record<string, string>;
}

const PLACEHOLDER =
  /\{(project|location|parent|queue|queueId|job|jobId|presetQueue|target|time|epoch|var)(?::([^{}]*))?\}/g;

function offsetMs(spec: string): number {
  const m = /^([+-]?\d+)(ms|s|m|h|d)$/.exec(spec);
  if (!m) throw new Error(`bad time offset "${spec}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}

function placeholder(name: string, arg: string | undefined, scope: Scope): string | number {
  const suffix = arg ? `-${arg}` : '';
  switch (name) {
    case 'project':
      return scope.project;
    case 'location':
      return scope.location;
    case 'parent':
      return scope.parent;
    case 'queueId':
    case 'jobId':
      return `${scope.prefix}${suffix}`;
    case 'queue':
      return `${scope.parent}/queues/${scope.prefix}${suffix}`;
    case 'job':
      return `${scope.parent}/jobs/${scope.prefix}${suffix}`;
    case 'presetQueue':
      return scope.presetQueue;
    case 'target':
      return scope.target;
    case 'time':
      return new Date(Math.floor((scope.now + offsetMs(arg ?? '0s')) / 1000) * 1000).toISOString();
    case 'epoch':
      return Math.floor((scope.now + offsetMs(arg ?? '0s')) / 1000);
    default: {
      const [variable, filter] = (arg ?? '').split('|');
      const value = scope.vars[variable!];
      if (value === undefined) throw new Error(`{var:${variable}} was not saved by an earlier step`);
      return filter === 'id' ? value.slice(value.lastIndexOf('/') + 1) : value;
    }
  }
}

/**
 * The value with its placeholders filled in. `{"$base64": text}` and `{"$bytes": n}` become bytes:
 * a Buffer for the clients, base64 for JSON.
 */
function fill(value: unknown, scope: Scope, form: 'client' | 'json' | 'expect'): unknown {
  if (typeof value === 'string') {
    const whole = /^\{epoch(?::([^{}]*))?\}$/.exec(value);
    if (whole) return placeholder('epoch', whole[1], scope);
    return value.replace(PLACEHOLDER, (_m, name: string, arg?: string) => String(placeholder(name, arg, scope)));
  }
  if (Array.isArray(value)) return value.map((v) => fill(v, scope, form));
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if ('$base64' in o || '$bytes' in o) {
      const bytes =
        '$base64' in o ? Buffer.from(fill(o.$base64, scope, form) as string) : Buffer.alloc(Number(o.$bytes), 'a');
      return form === 'client' ? bytes : bytes.toString('base64');
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fill(v, scope, form)]));
  }
  return value;
}

// ---- Performing a step ----

interface Observed {
  /** The result (normalized: bytes as base64, int64 as strings), or the error body's fields. */
  value?: unknown;
  error?: { code: number; message: string; details: unknown[]; httpStatus?: number; statusName?: string };
  httpStatus?: number;
  form: 'client' | 'json';
}

async function perform(step: Step, transport: Transport, scope: Scope, ctx: RunContext): Promise<Observed> {
  const useHttp = (transport === 'http' && step.http) || !step.call;
  if (useHttp) return performHttp(step.http!, scope, ctx);
  // grpc and rest use the client; the http transport uses the REST client for steps written only as calls.
  return performCall(step.call!, transport === 'grpc' ? 'grpc' : 'rest', scope, ctx);
}

async function performCall(
  call: NonNullable<Step['call']>,
  transport: 'grpc' | 'rest',
  scope: Scope,
  ctx: RunContext,
): Promise<Observed> {
  const client = ctx.clients.get(call.api ?? 'tasks', transport) as unknown as Record<
    string,
    (request: unknown, options: unknown) => Promise<unknown[]>
  >;
  const method = client[call.method];
  if (typeof method !== 'function') throw new Error(`the client has no method ${call.method}`);
  try {
    // No client-side retries: an emulator's first answer is what is judged, and a dead one fails fast.
    const [response] = await method.call(client, fill(call.request ?? {}, scope, 'client'), CALL_OPTIONS);
    return { value: normalize(response), form: 'client' };
  } catch (err) {
    const e = err as { code?: unknown; details?: unknown; message?: string; statusDetails?: unknown[] };
    if (typeof e.code !== 'number') throw err;
    // gRPC puts the server's message in `details`; the REST transport in `message`.
    const message = typeof e.details === 'string' ? e.details : (e.message ?? '');
    return { error: { code: e.code, message, details: (e.statusDetails ?? []).map(detail) }, form: 'client' };
  }
}

/** A google.rpc detail as the client decoded it, written as REST's JSON writes it (with its @type). */
function detail(d: unknown): unknown {
  const fullName = (d as { $type?: { fullName?: string } }).$type?.fullName;
  const out = normalize(d) as Record<string, unknown>;
  return fullName ? { '@type': `type.googleapis.com/${fullName.replace(/^\./, '')}`, ...out } : out;
}

async function performHttp(spec: NonNullable<Step['http']>, scope: Scope, ctx: RunContext): Promise<Observed> {
  const body = spec.body === undefined ? undefined : JSON.stringify(fill(spec.body, scope, 'json'));
  const headers: Record<string, string> = { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k] = String(fill(v, scope, 'json'));
  const response = await fetch(`${ctx.options.http!.replace(/\/$/, '')}${fill(spec.path, scope, 'json')}`, {
    method: spec.method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    json = { nonJsonBody: text };
  }
  const error = (json as { error?: Record<string, unknown> }).error;
  if (!response.ok || error) {
    const e = error ?? {};
    return {
      httpStatus: response.status,
      form: 'json',
      error: {
        code: -1,
        message: String(e.message ?? text),
        details: (e.details as unknown[]) ?? [],
        httpStatus: Number(e.code),
        statusName: String(e.status),
      },
    };
  }
  return { value: json, httpStatus: response.status, form: 'json' };
}

/** Client results as plain data: bytes as base64, Longs as strings, protobuf messages as objects. */
function normalize(value: unknown): unknown {
  if (value === null || value === undefined) return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.low === 'number' && typeof o.high === 'number' && typeof o.unsigned === 'boolean') {
      return String(o);
    }
    return Object.fromEntries(
      Object.entries(o)
        .filter(([k, v]) => v !== undefined && k !== '$type')
        .map(([k, v]) => [k, normalize(v)]),
    );
  }
  return value;
}

function dig(value: unknown, at: string): unknown {
  return at.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], value);
}

// ---- Judging ----

function judge(step: Step, observed: Observed, scope: Scope): string[] {
  const expect = (step.expect ?? {}) as Expect;
  if (expect.error) {
    const want = expect.error;
    const [statusName, httpStatus] = CODES[want.code] ?? ['?', 0];
    if (!observed.error) return [`expected ${statusName} (${want.code}), got success: ${short(observed.value)}`];
    const got = observed.error;
    const problems: string[] = [];
    if (observed.form === 'client') {
      if (got.code !== want.code) {
        problems.push(`expected code ${want.code} ${statusName}, got ${got.code} ${CODES[got.code]?.[0]}`);
      }
    } else {
      const wantHttp = want.httpStatus ?? httpStatus;
      if (observed.httpStatus !== wantHttp || got.httpStatus !== wantHttp || got.statusName !== statusName) {
        problems.push(
          `expected HTTP ${wantHttp} with error.code ${wantHttp} and error.status ${statusName}, got HTTP ${observed.httpStatus} with error.code ${got.httpStatus} and error.status ${got.statusName}`,
        );
      }
    }
    if (want.message !== undefined) {
      problems.push(...match(fill(want.message, scope, 'expect'), got.message, 'message'));
    }
    if (want.details !== undefined) {
      problems.push(...match(fill(want.details, scope, 'expect'), got.details, 'details'));
    }
    if (problems.length > 0 && !problems.some((p) => p.startsWith('message:'))) {
      problems.push(`(the message was: ${JSON.stringify(got.message)})`);
    }
    return problems;
  }
  if (observed.error) {
    return [
      `expected success, got ${CODES[observed.error.code]?.[0] ?? observed.error.statusName}: ${observed.error.message}`,
    ];
  }
  const problems: string[] = [];
  if (observed.form === 'json' && observed.httpStatus !== (expect.status ?? 200)) {
    problems.push(`expected HTTP ${expect.status ?? 200}, got ${observed.httpStatus}`);
  }
  const shape = observed.form === 'json' ? (expect.json ?? expect.result) : (expect.result ?? expect.json);
  if (shape !== undefined) problems.push(...match(fill(shape, scope, 'expect'), observed.value, 'result'));
  return problems;
}

function short(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

function isUnset(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === '0' || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as object).every(isUnset);
  return false;
}

function instant(v: unknown): number {
  if (typeof v === 'string') return Date.parse(v);
  if (v && typeof v === 'object' && 'seconds' in v) {
    const t = v as { seconds: unknown; nanos?: unknown };
    return Number(t.seconds) * 1000 + Math.floor(Number(t.nanos ?? 0) / 1e6);
  }
  return Number.NaN;
}

/**
 * Where `actual` differs from the expected shape. Objects: the keys named must match (others are
 * free); arrays: same length, item by item; numbers equal numeric strings (int64 travel as strings).
 * Operators: $match (a regular expression), $unset (absent or a default value), $present,
 * $exact (deep equality, no other keys), $includes (array items matching, anywhere), $length,
 * $time (the same instant, RFC 3339 or {seconds, nanos}; `within` seconds), $approx ([value, tolerance]).
 */
export function match(expected: unknown, actual: unknown, at = 'value'): string[] {
  const fail = (what: string) => [`${at}: expected ${what}, got ${short(actual)}`];
  if (expected === null) return actual === null || actual === undefined ? [] : fail('null');
  if (typeof expected === 'number') {
    return (typeof actual === 'number' || typeof actual === 'string') && actual !== '' && Number(actual) === expected
      ? []
      : fail(String(expected));
  }
  if (typeof expected === 'string') {
    return actual === expected || (typeof actual === 'number' && String(actual) === expected)
      ? []
      : fail(JSON.stringify(expected));
  }
  if (typeof expected === 'boolean') return actual === expected ? [] : fail(String(expected));
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) {
      return expected.length === 0 && (actual === undefined || actual === null) ? [] : fail(`an array`);
    }
    if (actual.length !== expected.length) return fail(`${expected.length} items`);
    return expected.flatMap((e, i) => match(e, actual[i], `${at}[${i}]`));
  }
  const e = expected as Record<string, unknown>;
  if ('$match' in e) {
    return typeof actual === 'string' && new RegExp(String(e.$match)).test(actual) ? [] : fail(`/${e.$match}/`);
  }
  if ('$unset' in e) return isUnset(actual) ? [] : fail('unset');
  if ('$present' in e) return isUnset(actual) ? fail('a value') : [];
  if ('$length' in e) return Array.isArray(actual) && actual.length === e.$length ? [] : fail(`${e.$length} items`);
  if ('$time' in e) {
    const want = instant(e.$time);
    const within = Number(e.within ?? 0) * 1000;
    return Math.abs(instant(actual) - want) <= within
      ? []
      : fail(`the instant ${new Date(want).toISOString()}${within ? ` ± ${e.within} s` : ''}`);
  }
  if ('$approx' in e) {
    const [want, within] = e.$approx as [number, number];
    return Math.abs(Number(actual) - want) <= within ? [] : fail(`${want} ± ${within}`);
  }
  if ('$exact' in e) {
    const problems = match(e.$exact, actual, at);
    if (problems.length > 0) return problems;
    if (e.$exact && typeof e.$exact === 'object' && !Array.isArray(e.$exact)) {
      const extra = Object.keys((actual ?? {}) as object).filter(
        (k) => !(k in (e.$exact as object)) && (actual as Record<string, unknown>)[k] !== undefined,
      );
      if (extra.length > 0) return [`${at}: unexpected ${extra.join(', ')} in ${short(actual)}`];
    }
    return [];
  }
  if ('$includes' in e) {
    if (!Array.isArray(actual)) return fail('an array');
    return (e.$includes as unknown[]).flatMap((want, i) =>
      actual.some((a) => match(want, a).length === 0) ? [] : [`${at}: no item matches ${short(want)} (#${i})`],
    );
  }
  if (actual === null || typeof actual !== 'object') return fail(short(expected));
  return Object.entries(e).flatMap(([k, v]) => match(v, (actual as Record<string, unknown>)[k], `${at}.${k}`));
}

// ---- What the dispatch target received ----

async function checkReceived(
  spec: NonNullable<Step['received']>,
  scope: Scope,
  route: Route,
  ctx: RunContext,
): Promise<string[]> {
  const waitMs = ctx.options.waitMs ?? 20_000;
  const arrived = await route.received(spec.count, waitMs);
  if (!arrived) {
    return [`expected ${spec.count} request(s) at the target within ${waitMs} ms, got ${route.requests.length}`];
  }
  if (route.requests.length !== spec.count) {
    return [`expected ${spec.count} request(s) at the target, got ${route.requests.length}`];
  }
  const problems: string[] = [];
  for (const [i, want] of (spec.requests ?? []).entries()) {
    const got = route.requests[i]!;
    const at = `request ${i + 1}`;
    const lower = Object.fromEntries(Object.entries(got.headers).map(([k, v]) => [k.toLowerCase(), v]));
    const w = fill(want, scope, 'expect') as ReceivedExpect;
    if (w.method !== undefined) problems.push(...match(w.method, got.method, `${at} method`));
    if (w.path !== undefined) problems.push(...match(w.path, got.path, `${at} path`));
    if (w.body !== undefined) problems.push(...match(w.body, got.body.toString(), `${at} body`));
    for (const [name, value] of Object.entries(w.headers ?? {})) {
      problems.push(...match(value, lower[name.toLowerCase()], `${at} header ${name}`));
    }
    for (const name of w.absentHeaders ?? []) {
      if (name.toLowerCase() in lower)
        problems.push(`${at}: header ${name} should be absent, got ${lower[name.toLowerCase()]}`);
    }
    if (w.serviceHeaders) {
      const service = Object.fromEntries(
        Object.entries(lower).filter(([k]) => /^(x-cloudtasks-|x-cloudscheduler|user-agent$)/.test(k)),
      );
      const want = Object.fromEntries(Object.entries(w.serviceHeaders).map(([k, v]) => [k.toLowerCase(), v]));
      problems.push(...match({ $exact: want }, service, `${at} service headers`));
    }
    if (w.token) problems.push(...(await checkToken(lower.authorization, w.token, ctx, at)));
  }
  return problems;
}

/** The bearer token verifies with the key of the X.509 certificate /certs serves for its kid. */
async function checkToken(
  authorization: string | undefined,
  want: NonNullable<ReceivedExpect['token']>,
  ctx: RunContext,
  at: string,
): Promise<string[]> {
  const token = /^Bearer ([\w-]+\.[\w-]+\.[\w-]+)$/.exec(authorization ?? '')?.[1];
  if (!token) return [`${at}: expected Authorization: Bearer <JWT>, got ${short(authorization)}`];
  const base = ctx.options.http!.replace(/\/$/, '');
  const { kid, alg } = decodeProtectedHeader(token);
  if (alg !== 'RS256' || !kid) return [`${at}: expected an RS256 token with a kid, got alg ${alg}, kid ${kid}`];
  const certs = (await (await fetch(`${base}/certs`)).json()) as Record<string, string>;
  if (!certs[kid]) return [`${at}: /certs has no entry for kid ${kid}`];
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certs[kid]);
  } catch (err) {
    return [`${at}: /certs[${kid}] is not an X.509 certificate (${(err as Error).message})`];
  }
  const discovery = await fetch(`${base}/.well-known/openid-configuration`);
  const issuer = discovery.ok ? ((await discovery.json()) as { issuer?: string }).issuer : undefined;
  try {
    const { payload } = await jwtVerify(token, certificate.publicKey, {
      audience: want.audience,
      algorithms: ['RS256'],
      ...(issuer ? { issuer } : {}),
    });
    return want.claims ? match(want.claims, payload, `${at} token claims`) : [];
  } catch (err) {
    return [`${at}: the token does not verify with the /certs certificate: ${(err as Error).message}`];
  }
}

// ---- The dispatch target: a local HTTP server, one route per case ----

interface Received {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

interface Route {
  url: string;
  requests: Received[];
  received(count: number, waitMs: number): Promise<boolean>;
  close(): void;
}

interface Target {
  route(replies: NonNullable<Case['target']>['replies']): Route;
  close(): Promise<void>;
}

async function startTarget(host: string): Promise<Target> {
  const routes = new Map<string, { route: Route; replies: NonNullable<Case['target']>['replies']; wake(): void }>();
  let next = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/c\/(\d+)(\/.*)?$/.exec(req.url ?? '');
      const entry = m ? routes.get(m[1]!) : undefined;
      if (!entry) {
        res.writeHead(404).end();
        return;
      }
      const headers: Record<string, string> = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers[req.rawHeaders[i]!] = req.rawHeaders[i + 1]!;
      const index = entry.route.requests.push({
        method: req.method ?? '',
        path: m![2] ?? '/',
        headers,
        body: Buffer.concat(chunks),
      });
      const reply = entry.replies?.[index - 1] ?? 200;
      const { status, headers: replyHeaders } = typeof reply === 'number' ? { status: reply, headers: {} } : reply;
      res.writeHead(status, replyHeaders).end();
      entry.wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    route(replies) {
      const key = String(next++);
      let waiters: (() => boolean)[] = [];
      const route: Route = {
        url: `http://${host}:${port}/c/${key}`,
        requests: [],
        received: (count, waitMs) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), waitMs);
            const check = () => {
              if (route.requests.length < count) return false;
              clearTimeout(timer);
              resolve(true);
              return true;
            };
            if (!check()) waiters.push(check);
          }),
        close: () => routes.delete(key),
      };
      routes.set(key, {
        route,
        replies,
        wake: () => {
          waiters = waiters.filter((w) => !w());
        },
      });
      return route;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- Clients ----

class Clients {
  private readonly made = new Map<string, { close(): Promise<void> }>();
  private readonly options: SuiteOptions;

  constructor(options: SuiteOptions) {
    this.options = options;
  }

  get(api: Api, transport: 'grpc' | 'rest'): unknown {
    const key = `${api}/${transport}`;
    let client = this.made.get(key);
    if (!client) {
      const common = { authClient: new PassThroughClient(), projectId: this.options.project ?? 'conformance' };
      let settings: gax.ClientOptions;
      if (transport === 'grpc') {
        const address = this.options.grpc!;
        const colon = address.lastIndexOf(':');
        settings = {
          ...common,
          apiEndpoint: address.slice(0, colon).replace(/^\[|\]$/g, ''),
          port: Number(address.slice(colon + 1)),
          sslCreds: gax.grpc.credentials.createInsecure(),
        };
      } else {
        const url = new URL(this.options.http!);
        settings = {
          ...common,
          apiEndpoint: url.hostname.replace(/^\[|\]$/g, ''),
          port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
          fallback: 'rest',
          protocol: url.protocol.replace(':', ''),
        };
      }
      client =
        api === 'tasks'
          ? new CloudTasksClient(settings)
          : api === 'tasks.v2beta3'
            ? new v2beta3.CloudTasksClient(settings)
            : new CloudSchedulerClient(settings);
      this.made.set(key, client);
    }
    return client;
  }

  /** The client for housekeeping (listing and deleting what a case made) over a transport. */
  admin(transport: Transport): { tasks: CloudTasksClient; scheduler: CloudSchedulerClient } {
    const t = transport === 'grpc' ? 'grpc' : 'rest';
    return {
      tasks: this.get('tasks', t) as CloudTasksClient,
      scheduler: this.get('scheduler', t) as CloudSchedulerClient,
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.made.values()].map((c) => c.close()));
  }
}

/** Deletes the queues and jobs a case made (their names start with its prefix), best effort. */
async function cleanup(scope: Scope, ctx: RunContext): Promise<void> {
  const { tasks, scheduler } = ctx.clients.admin(ctx.options.grpc ? 'grpc' : 'rest');
  const mine = (name?: string | null) => (name ?? '').split('/').pop()!.startsWith(scope.prefix);
  const [queues] = await tasks.listQueues({ parent: scope.parent, pageSize: 1000 }, { autoPaginate: false });
  await Promise.all(queues.filter((q) => mine(q.name)).map((q) => tasks.deleteQueue({ name: q.name })));
  const [jobs] = await scheduler.listJobs({ parent: scope.parent, pageSize: 500 }, { autoPaginate: false });
  await Promise.all(jobs.filter((j) => mine(j.name)).map((j) => scheduler.deleteJob({ name: j.name })));
}

// ---- Command line ----

function printResult(r: CaseResult): void {
  if (r.skipped) {
    if (r.skipped !== `not a ${r.transport} case` && r.skipped !== 'not selected') {
      console.log(`-   ${r.transport.padEnd(4)} ${r.id}  (skipped: ${r.skipped})`);
    }
    return;
  }
  console.log(`${r.ok ? 'ok ' : 'FAIL'} ${r.transport.padEnd(4)} ${r.id}  ${r.ms} ms`);
  for (const e of r.errors) console.log(`       ${e}`);
}

export function summary(report: SuiteReport): string {
  const lines: string[] = [];
  for (const t of TRANSPORTS) {
    const ran = report.results.filter((r) => r.transport === t && !r.skipped);
    if (ran.length === 0) continue;
    const seconds = ran.reduce((sum, r) => sum + r.ms, 0) / 1000;
    lines.push(`${t}: ${ran.filter((r) => r.ok).length}/${ran.length} passed in ${seconds.toFixed(1)} s`);
  }
  const explicit = report.results.filter(
    (r) => r.skipped && r.skipped !== `not a ${r.transport} case` && r.skipped !== 'not selected',
  ).length;
  lines.push(
    `${report.passed} passed, ${report.failed} failed, ${explicit} skipped, in ${(report.ms / 1000).toFixed(1)} s`,
  );
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const list = (s: string | undefined) => (s ? s.split(',').filter(Boolean) : undefined);
  const { values } = parseArgs({
    args: argv,
    options: {
      grpc: { type: 'string' },
      http: { type: 'string' },
      project: { type: 'string' },
      location: { type: 'string' },
      'preset-queue': { type: 'string' },
      transport: { type: 'string' },
      only: { type: 'string' },
      skip: { type: 'string' },
      without: { type: 'string' },
      'target-host': { type: 'string' },
      'wait-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || (!values.grpc && !values.http)) {
    console.log(
      [
        'usage: node suite.ts --grpc HOST:PORT --http http://HOST:PORT [options]',
        '  --project P, --location L   where the cases make their queues and jobs (conformance, us-central1)',
        '  --preset-queue NAME         a queue the emulator was started with; its case is skipped without',
        '  --transport grpc,rest,http  which transports (default: those whose address is given)',
        '  --only ID|TAG,…  --skip ID|TAG,…',
        '  --without BEHAVIOUR,…       e.g. queue-tombstone, when the emulator runs without it',
        '  --target-host HOST          the name the emulator reaches this machine at (127.0.0.1)',
        '  --wait-ms MS                how long to wait for a dispatch (20000)',
      ].join('\n'),
    );
    return values.help ? 0 : 2;
  }
  const report = await runSuite({
    ...(values.grpc ? { grpc: values.grpc } : {}),
    ...(values.http ? { http: values.http } : {}),
    ...(values.project ? { project: values.project } : {}),
    ...(values.location ? { location: values.location } : {}),
    ...(values['preset-queue'] ? { presetQueue: values['preset-queue'] } : {}),
    ...(values.transport ? { transports: list(values.transport) as Transport[] } : {}),
    ...(values.only ? { only: list(values.only)! } : {}),
    ...(values.skip ? { skip: list(values.skip)! } : {}),
    ...(values.without ? { without: list(values.without)! } : {}),
    ...(values['target-host'] ? { targetHost: values['target-host'] } : {}),
    ...(values['wait-ms'] ? { waitMs: Number(values['wait-ms']) } : {}),
    onResult: printResult,
  });
  console.log(`\n${summary(report)}`);
  return report.failed > 0 || report.passed === 0 ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    console.error(`conformance: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 2;
  }
}
