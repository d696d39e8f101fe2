// The emulator's REST port refuses what a web page in the developer's browser can send (anything
// with an Origin header, a body not declared JSON) and a Host that does not name this machine (DNS
// rebinding), before reading the body; the official REST client and curl-style JSON requests
// still work; the gRPC port cannot be spoken by a browser at all; and listening beyond loopback
// is warned about. (test/integration/emulator-lockdown.test.ts replays the forged top-up against
// the whole service.)
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { describe, test } from 'node:test';
import type { CloudTasksClient } from '@google-cloud/tasks';
import { type Emulator, type LogLevel, startEmulator } from '../src/index.ts';
import { hostAllowed, isLoopbackAddress } from '../src/lockdown.ts';
import { collect, PARENT, startTarget, startTestEmulator, tasksClient } from './helpers.ts';

interface Answer {
  status: number;
  body: { error?: { code: number; status: string; message: string } } & Record<string, unknown>;
}

/** One HTTP/1.1 request with exactly these headers (Host included), as a browser or a tool would send it. */
function send(
  port: number,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: { Host: `127.0.0.1:${port}`, ...options.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const QUEUE = `${PARENT}/queues/lockdown`;

/** A CreateTask body, as the REST API takes it: a push to the target with a signed token. */
function createTaskBody(targetUrl: string, id: string): string {
  return JSON.stringify({
    task: {
      name: `${QUEUE}/tasks/${id}`,
      httpRequest: {
        url: `${targetUrl}/tasks/credits.topup`,
        httpMethod: 'POST',
        body: Buffer.from(JSON.stringify({ accountId: 1, credits: 1_000_000 })).toString('base64'),
        oidcToken: { serviceAccountEmail: 'tasks-invoker@local.iam.gserviceaccount.com', audience: targetUrl },
      },
    },
  });
}

async function setup(t: {
  after: (fn: () => Promise<unknown>) => void;
}): Promise<{ emulator: Emulator; grpc: CloudTasksClient }> {
  const { emulator } = await startTestEmulator();
  const client = tasksClient(emulator, 'rest');
  const grpc = tasksClient(emulator, 'grpc');
  t.after(() => Promise.all([client.close(), grpc.close(), emulator.close()]));
  // The official client over REST (fallback: 'rest') is a program, not a page: it gets through.
  await client.createQueue({ parent: PARENT, queue: { name: QUEUE } });
  return { emulator, grpc };
}

describe('the REST port refuses browsers and foreign Host names', () => {
  test("a page's no-cors POST (text/plain body, Origin header) creates nothing; the same body sent as JSON by a program does", async (t) => {
    const { emulator, grpc } = await setup(t);
    const target = await startTarget();
    t.after(() => target.close());
    const created = collect(emulator, 'task:created');
    const path = `/v2/${QUEUE}/tasks`;

    // What fetch(url, { method: 'POST', mode: 'no-cors', body }) sends from https://attacker.example.
    const forged = await send(emulator.httpPort, {
      method: 'POST',
      path,
      headers: { Origin: 'https://attacker.example', 'Content-Type': 'text/plain;charset=UTF-8' },
      body: createTaskBody(target.url, 'forged'),
    });
    assert.equal(forged.status, 403);
    assert.equal(forged.body.error?.status, 'PERMISSION_DENIED');
    assert.match(forged.body.error?.message ?? '', /Origin/);

    // A page allowed to send JSON (after a preflight) still carries its Origin.
    const withJson = await send(emulator.httpPort, {
      method: 'POST',
      path,
      headers: { Origin: 'null', 'Content-Type': 'application/json' },
      body: createTaskBody(target.url, 'forged-json'),
    });
    assert.equal(withJson.status, 403);
    // The preflight itself.
    const preflight = await send(emulator.httpPort, {
      method: 'OPTIONS',
      path,
      headers: { Origin: 'https://attacker.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(preflight.status, 403);

    // Bodies a browser can send without Origin checks elsewhere (forms, text) are not JSON.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '']) {
      const answer = await send(emulator.httpPort, {
        method: 'POST',
        path,
        headers: type ? { 'Content-Type': type } : {},
        body: createTaskBody(target.url, 'not-json'),
      });
      assert.equal(answer.status, 415, `Content-Type "${type}"`);
      assert.equal(answer.body.error?.code, 415);
    }
    const patched = await send(emulator.httpPort, {
      method: 'PATCH',
      path: `/v2/${QUEUE}`,
      headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({ name: QUEUE }),
    });
    assert.equal(patched.status, 415);

    assert.equal(created.length, 0, 'no task was created');
    const [listed] = await grpc.listTasks({ parent: QUEUE });
    assert.deepEqual(listed, []);

    // The control: the same body, as curl or a client library sends it, is accepted.
    const program = await send(emulator.httpPort, {
      method: 'POST',
      path,
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
      body: createTaskBody(target.url, 'program'),
    });
    assert.equal(program.status, 200, JSON.stringify(program.body));
    assert.deepEqual(
      created.map((e) => e.task.split('/').pop()),
      ['program'],
    );
  });

  test('a Host naming another machine (DNS rebinding) is refused, reads included; loopback names and the bound address are not', async (t) => {
    const { emulator, grpc } = await setup(t);
    const port = emulator.httpPort;
    for (const host of [`attacker.example:${port}`, `localhost.attacker.example:${port}`, `127.0.0.1.nip.io:${port}`]) {
      const list = await send(port, { path: `/v2/${QUEUE}/tasks`, headers: { Host: host } });
      assert.equal(list.status, 403, host);
      assert.match(list.body.error?.message ?? '', /Host/);
      const create = await send(port, {
        method: 'POST',
        path: `/v2/${PARENT}/queues`,
        headers: { Host: host, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: `${PARENT}/queues/rebound` }),
      });
      assert.equal(create.status, 403, host);
    }
    const jwks = await send(port, { path: '/jwks', headers: { Host: `attacker.example:${port}` } });
    assert.equal(jwks.status, 403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, 'localhost']) {
      const list = await send(port, { path: `/v2/${QUEUE}/tasks`, headers: { Host: host } });
      assert.equal(list.status, 200, host);
    }
    const [queues] = await grpc.listQueues({ parent: PARENT });
    assert.deepEqual(
      queues.map((q) => q.name),
      [QUEUE],
      'the rebound create made no queue',
    );
  });

  test('which Host names are accepted, by bound address', () => {
    const loopback = { bound: '127.0.0.1', allowed: [] };
    assert.equal(hostAllowed('127.0.0.1:8124', loopback), true);
    assert.equal(hostAllowed('127.5.6.7', loopback), true);
    assert.equal(hostAllowed('localhost.:8124', loopback), true);
    assert.equal(hostAllowed('[::1]:8124', loopback), true);
    assert.equal(hostAllowed('10.0.0.5:8124', loopback), false);
    assert.equal(hostAllowed('emulator:8124', loopback), false);
    assert.equal(hostAllowed('', loopback), false);
    assert.equal(hostAllowed(undefined, loopback), false);
    // Every interface: other machines use the machine's addresses, which cannot be rebound.
    const everywhere = { bound: '0.0.0.0', allowed: ['emulator'] };
    assert.equal(hostAllowed('10.0.0.5:8124', everywhere), true);
    assert.equal(hostAllowed('[fd00::5]:8124', everywhere), true);
    assert.equal(hostAllowed('Emulator:8124', everywhere), true);
    assert.equal(hostAllowed('attacker.example:8124', everywhere), false);
    assert.equal(hostAllowed('0.0.0.0.attacker.example', everywhere), false);
    // One address: that one and loopback.
    const one = { bound: '192.168.1.5', allowed: [] };
    assert.equal(hostAllowed('192.168.1.5:8124', one), true);
    assert.equal(hostAllowed('192.168.1.6:8124', one), false);
    assert.deepEqual(
      ['127.0.0.1', '::1', '[::1]', 'localhost', '0.0.0.0', '::', '192.168.1.5'].map(isLoopbackAddress),
      [true, true, true, true, false, false, false],
    );
  });

  test('the issuer host given to the emulator and --allow-host names are accepted', async (t) => {
    const emulator = await startEmulator({
      grpcPort: 0,
      httpPort: 0,
      autoDispatch: false,
      issuer: 'http://tasks-emulator:8124',
      allowedHosts: ['emulator.internal'],
    });
    t.after(() => emulator.close());
    const port = emulator.httpPort;
    for (const [host, status] of [
      ['tasks-emulator:8124', 200],
      [`emulator.internal:${port}`, 200],
      [`other.internal:${port}`, 403],
    ] as const) {
      assert.equal((await send(port, { path: '/jwks', headers: { Host: host } })).status, status, host);
    }
  });
});

describe('the gRPC port', () => {
  test('a browser cannot speak it: HTTP/1.1 is not answered, and any content type but application/grpc is refused', async (t) => {
    const { emulator } = await setup(t);
    const created = collect(emulator, 'task:created');
    const path = '/google.cloud.tasks.v2.CloudTasks/CreateTask';
    // Browsers send HTTP/2 only over TLS; a page's request to this port is HTTP/1.1.
    await assert.rejects(
      send(emulator.grpcPort, {
        method: 'POST',
        path,
        headers: { Origin: 'https://attacker.example', 'Content-Type': 'text/plain;charset=UTF-8' },
        body: createTaskBody('http://127.0.0.1:1', 'over-grpc'),
      }),
    );
    // Even over HTTP/2 without TLS (no browser does that), grpc-js wants application/grpc.
    const session = http2.connect(`http://127.0.0.1:${emulator.grpcPort}`);
    t.after(() => session.close());
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'text/plain',
        origin: 'https://attacker.example',
      });
      stream.on('response', (headers) => resolve(Number(headers[':status'])));
      stream.on('error', reject);
      stream.end(createTaskBody('http://127.0.0.1:1', 'over-h2'));
    });
    assert.equal(status, 415);
    assert.deepEqual(created, []);
  });
});

describe('listening beyond loopback', () => {
  test('is warned about, in several lines naming the address; loopback is not', async () => {
    const logs: { level: LogLevel; message: string }[] = [];
    const log = (level: LogLevel, message: string) => logs.push({ level, message });
    const local = await startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false, log });
    await local.close();
    assert.deepEqual(
      logs.filter((l) => l.level === 'warn'),
      [],
    );
    const exposed = await startEmulator({ host: '0.0.0.0', grpcPort: 0, httpPort: 0, autoDispatch: false, log });
    await exposed.close();
    const warnings = logs.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1);
    const lines = warnings[0]!.message.split('\n');
    assert.ok(lines.length >= 5, warnings[0]!.message);
    assert.match(warnings[0]!.message, /listens on 0\.0\.0\.0/);
    assert.match(warnings[0]!.message, /signs an OIDC token/);
  });
});
