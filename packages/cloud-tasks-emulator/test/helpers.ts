// Shared by the emulator tests: an emulator on random ports driven by a TestClock, the official
// clients pointed at it over either transport, and a target server that records what arrives.
// The package imports nothing from the service that uses it, so its test clock is its own.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';
import {
  type Clock,
  type Emulator,
  type EmulatorEventName,
  type EmulatorEvents,
  type EmulatorOptions,
  startEmulator,
} from '../src/index.ts';

/** A Clock (the emulator's port) that moves only when told to, so tests make work due instead of sleeping. */
export class TestClock implements Clock {
  #now: number;
  constructor(start: number | string | Date = '2026-01-01T00:00:00.000Z') {
    this.#now = new Date(start).getTime();
  }
  now(): number {
    return this.#now;
  }
  set(to: number | string | Date): void {
    this.#now = new Date(to).getTime();
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}

export const PROJECT = 'dev';
export const LOCATION = 'here';
export const PARENT = `projects/${PROJECT}/locations/${LOCATION}`;
export const START = Date.parse('2026-01-01T00:00:00.000Z');

export type Transport = 'grpc' | 'rest';
export const TRANSPORTS: Transport[] = ['grpc', 'rest'];

export async function startTestEmulator(
  options: EmulatorOptions = {},
  start = START,
): Promise<{ emulator: Emulator; clock: TestClock }> {
  const clock = new TestClock(start);
  const emulator = await startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false, clock, ...options });
  return { emulator, clock };
}

/** Where a client connects: a started emulator, or the ports a child process printed. */
export type Endpoints = Pick<Emulator, 'grpcPort' | 'httpPort'>;

/** Options for either official client, over gRPC or over REST (fallback), to the emulator. */
function clientOptions(emulator: Endpoints, transport: Transport) {
  const common = { apiEndpoint: '127.0.0.1', authClient: new PassThroughClient(), projectId: PROJECT };
  return transport === 'grpc'
    ? { ...common, port: emulator.grpcPort, sslCreds: gax.grpc.credentials.createInsecure() }
    : { ...common, port: emulator.httpPort, fallback: 'rest' as const, protocol: 'http' };
}

export function tasksClient(emulator: Endpoints, transport: Transport): CloudTasksClient {
  return new CloudTasksClient(clientOptions(emulator, transport));
}

export function schedulerClient(emulator: Endpoints, transport: Transport): CloudSchedulerClient {
  return new CloudSchedulerClient(clientOptions(emulator, transport));
}

export interface Received {
  method: string;
  path: string;
  /** Header names as sent on the wire (case kept). */
  headers: Record<string, string>;
  body: Buffer;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
}

export interface Target {
  /** Base URL, e.g. http://127.0.0.1:PORT */
  url: string;
  requests: Received[];
  /** Requests currently being answered, and the most there ever were at once. */
  inFlight: number;
  maxInFlight: number;
  /** Resolves once `count` requests have arrived (counting those already here). */
  received(count: number): Promise<void>;
  close(): Promise<void>;
}

/** A local HTTP server standing for Cloud Run; `reply` decides each answer (200 by default). */
export async function startTarget(
  reply: (request: Received, index: number) => number | Reply | Promise<number | Reply> = () => 200,
): Promise<Target> {
  const waiting: { count: number; resolve: () => void }[] = [];
  const target: Target = {
    url: '',
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    received: (count) =>
      target.requests.length >= count ? Promise.resolve() : new Promise((resolve) => waiting.push({ count, resolve })),
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    target.inFlight += 1;
    target.maxInFlight = Math.max(target.maxInFlight, target.inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers[req.rawHeaders[i]!] = req.rawHeaders[i + 1]!;
      const received: Received = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers,
        body: Buffer.concat(chunks),
      };
      const index = target.requests.push(received) - 1;
      for (const w of waiting.filter((w) => target.requests.length >= w.count)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
      let answer: number | Reply;
      try {
        answer = await reply(received, index);
      } catch {
        answer = 500;
      }
      const { status, headers: replyHeaders } = typeof answer === 'number' ? { status: answer, headers: {} } : answer;
      target.inFlight -= 1;
      res.writeHead(status, replyHeaders);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  target.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  target.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return target;
}

/** The headers Cloud Tasks / Cloud Scheduler add, from what a target received. */
export function serviceHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (/^(x-cloudtasks-|x-cloudscheduler|user-agent$)/i.test(k)) out[k] = v;
  }
  return out;
}

/** The rejection a client call ends with, for asserting code and message. */
export async function rejection(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: number; details?: unknown; message: string };
    // gRPC puts the server's message in `details` (and "5 NOT_FOUND: …" in `message`); REST in `message`.
    return { code: e.code, details: typeof e.details === 'string' ? e.details : e.message };
  }
  throw new Error('expected the call to fail');
}

/** Collects every payload of an event, from now on. */
export function collect<K extends EmulatorEventName>(emulator: Emulator, event: K): EmulatorEvents[K][] {
  const all: EmulatorEvents[K][] = [];
  emulator.events.on(event, (payload) => all.push(payload));
  return all;
}
