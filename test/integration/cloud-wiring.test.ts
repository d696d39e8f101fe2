// The cloud wiring (TASKS_BACKEND=cloud), with Google's endpoints replaced by local servers through
// each client's documented endpoint options: the createTask request the official client sends, the
// push route verifying tokens issued under Google's issuer names, the claim checks of cloud-run-iam,
// and the real binary refusing unsafe configurations and keeping signed requests out of its banner.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  alreadyExists,
  type GrpcServer,
  loadServices,
  type ProtoObject,
  startGrpcServer,
} from '@backend/cloud-tasks-emulator/grpc';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';
import { z } from 'zod';
import { buildApp } from '../../src/app.ts';
import { TestClock } from '../../src/clock.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import { registry as appRegistry } from '../../src/task-registry.ts';
import { closeTaskServices, createTaskServices } from '../../src/task-services.ts';
import { type CloudClients, createCloudClients } from '../../src/tasks/cloud-clients.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { TaskEnqueuer, taskIdFor } from '../../src/tasks/enqueue.ts';
import { createPushAuthenticator, GOOGLE_ISSUERS } from '../../src/tasks/push-auth.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { emulatorAddress, enqueueTarget } from '../../src/tasks/target.ts';
import { TaskEvents } from '../../src/tasks/task-events.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { runBackend, servicePorts, startBackend } from '../helpers/cli-process.ts';
import { push } from '../helpers/push.ts';
import { createTestDb, testDbKind } from '../helpers/test-db.ts';
import { INVOKER, startTestIssuer } from '../helpers/test-issuer.ts';

/** What a Cloud Run service in cloud mode is given (secrets included), minus anything optional. */
const CLOUD: Record<string, string> = {
  TASKS_BACKEND: 'cloud',
  GCP_PROJECT_ID: 'acme-prod',
  GCP_LOCATION: 'europe-west1',
  PUBLIC_BASE_URL: 'https://backend-abc123-ew.a.run.app',
  SESSION_SECRET: 's'.repeat(40),
  TASKS_INVOKER_SERVICE_ACCOUNT: INVOKER,
  // Shedding on event-loop lag is on by default in cloud mode; on a busy CI machine a pause would
  // turn these answers into 503s. load-shedding.test.ts tests it; buildTestApp turns it off too.
  SHED_EVENT_LOOP_LAG_MS: '0',
};

describe('createTask in cloud mode, against a local server in place of cloudtasks.googleapis.com', () => {
  let server: GrpcServer;
  const received: ProtoObject[] = [];
  const names = new Set<string>();
  before(async () => {
    // Our emulator's gRPC transport, with one handler that records: the bytes on the wire are
    // decoded with the protos the official client ships.
    server = await startGrpcServer(
      '127.0.0.1',
      0,
      [
        {
          spec: loadServices().tasks,
          handlers: {
            CreateTask: (request) => {
              received.push(request);
              const name = String(request.task?.name);
              if (names.has(name)) throw alreadyExists(`Task ${name} already exists.`);
              names.add(name);
              return request.task;
            },
          },
        },
      ],
      () => {},
    );
  });
  after(() => server.close());

  /** The service's own wiring for this configuration, with only the endpoint replaced. */
  function wire(config: Config): { enqueuer: TaskEnqueuer; clients: CloudClients } {
    assert.equal(emulatorAddress(config), undefined, 'cloud mode must not talk to an emulator');
    const clients = createCloudClients({
      emulator: emulatorAddress(config),
      projectId: config.tasks.projectId,
      google: {
        apiEndpoint: '127.0.0.1',
        port: server.port,
        sslCreds: gax.grpc.credentials.createInsecure(),
        authClient: new PassThroughClient(),
      },
    });
    const enqueuer = new TaskEnqueuer({
      client: clients.tasks,
      registry: appRegistry,
      target: enqueueTarget(config),
      clock: new TestClock('2026-03-01T12:00:00.000Z'),
      log: captureLogger().logger,
    });
    return { enqueuer, clients };
  }

  const payload = { requestId: 'wamid.HBgL-abc', accountId: 7, to: '15550001234', topic: 'tides' };

  test('the request carries the OIDC token (invoker, audience), the deadline, the keyed name and the URL', async () => {
    const config = loadConfig(CLOUD);
    const { enqueuer, clients } = wire(config);
    try {
      const result = await enqueuer.enqueue('blog.generate_post', payload);
      assert.equal(received.length, 1);
      const [request] = received;
      const taskId = taskIdFor({ name: 'blog.generate_post' }, payload.requestId);
      assert.equal(request!.parent, 'projects/acme-prod/locations/europe-west1/queues/blog');
      assert.equal(request!.task.name, `projects/acme-prod/locations/europe-west1/queues/blog/tasks/${taskId}`);
      assert.deepEqual(result, { taskName: request!.task.name, created: true });
      assert.deepEqual(request!.task.dispatchDeadline, { seconds: 300 });
      const http = request!.task.httpRequest;
      assert.equal(http.url, 'https://backend-abc123-ew.a.run.app/tasks/blog.generate_post');
      assert.equal(http.httpMethod, 'POST');
      assert.deepEqual(http.oidcToken, {
        serviceAccountEmail: INVOKER,
        audience: 'https://backend-abc123-ew.a.run.app',
      });
      assert.equal(http.headers['Content-Type'], 'application/json');
      assert.equal(http.headers['X-Task-Key'], payload.requestId);
      assert.equal(http.headers['X-Task-Secret'], undefined);
      assert.deepEqual(JSON.parse(Buffer.from(http.body).toString('utf8')), payload);

      // The same key again: the same name, answered ALREADY_EXISTS, which is a success.
      const again = await enqueuer.enqueue('blog.generate_post', payload);
      assert.deepEqual(again, { taskName: request!.task.name, created: false });
      assert.equal(received[1]!.task.name, request!.task.name);
    } finally {
      await clients.close();
    }
  });

  test('with tasks on a service of their own, pushes and the audience go there; nothing else moves', async () => {
    const config = loadConfig({ ...CLOUD, TASKS_PUSH_BASE_URL: 'https://tasks-abc123-ew.a.run.app' });
    const { enqueuer, clients } = wire(config);
    try {
      const before = received.length;
      await enqueuer.enqueue('blog.generate_post', { ...payload, requestId: 'split-1' });
      const http = received[before]!.task.httpRequest;
      assert.equal(http.url, 'https://tasks-abc123-ew.a.run.app/tasks/blog.generate_post');
      assert.deepEqual(http.oidcToken, { serviceAccountEmail: INVOKER, audience: 'https://tasks-abc123-ew.a.run.app' });
      assert.equal(config.publicBaseUrl, 'https://backend-abc123-ew.a.run.app');
    } finally {
      await clients.close();
    }
  });

  test('TASKS_AUTH=secret sends the secret header and no OIDC token', async () => {
    const secret = 'x'.repeat(40);
    const config = loadConfig({ ...CLOUD, TASKS_AUTH: 'secret', TASK_SECRET: secret });
    const { enqueuer, clients } = wire(config);
    try {
      const before = received.length;
      await enqueuer.enqueue('blog.generate_post', { ...payload, requestId: 'secret-1' });
      const http = received[before]!.task.httpRequest;
      assert.equal(http.oidcToken, undefined);
      assert.equal(http.headers['X-Task-Secret'], secret);
    } finally {
      await clients.close();
    }
  });
});

// The push route, built as in cloud mode (Google's issuer names), with the signing keys served
// locally: the stand-in issuer signs tokens whose iss is Google's.
let handled = 0;
const echo = defineTask({
  name: 'test.echo',
  queue: 'q',
  payload: z.object({ n: z.number() }),
  async handler() {
    handled++;
    return {};
  },
});
const echoRegistry = createRegistry({ tasks: [echo], queues: [{ name: 'q' }], schedules: [] });

async function cloudApp(env: Record<string, string>) {
  const config = loadConfig({ ...CLOUD, ...env });
  const db = await createTestDb();
  const logs = captureLogger();
  const clock = new TestClock('2026-03-01T12:00:00.000Z');
  const issuer = await startTestIssuer({
    audience: config.tasks.oidcAudience,
    nowSeconds: () => Math.floor(clock.now() / 1000),
  });
  const services = createTaskServices(config);
  const app = await buildApp({
    config,
    db,
    logger: logs.logger,
    clock,
    registry: echoRegistry,
    // What main.ts gives in cloud mode, but the keys from the stand-in issuer: the issuers are
    // left to the default, Google's two names.
    pushAuth: createPushAuthenticator({
      mode: config.tasks.auth,
      audience: config.tasks.oidcAudience,
      invokerEmail: config.tasks.invokerServiceAccount,
      secret: config.tasks.secret,
      jwksUrl: issuer.jwksUrl,
      clock,
    }),
    enqueue: async () => ({ taskName: 'unused', created: true }),
    services,
    events: new TaskEvents(),
  });
  let n = 0;
  const now = () => Math.floor(clock.now() / 1000);
  return {
    app,
    config,
    issuer,
    now,
    /** A token at Google's issuer name, as Cloud Tasks sends it. */
    google: (claims: Record<string, unknown> = {}, o: { nowSeconds?: number } = {}) =>
      issuer.token({ iss: 'https://accounts.google.com', ...claims }, o),
    async pushWith(token: string | null) {
      return push(app, issuer, 'test.echo', { n: 1 }, { token, taskName: `cw-${++n}` });
    },
    async refused(reason: string, token: string | null) {
      const before = { handled, logs: logs.lines.length };
      const r = await push(app, issuer, 'test.echo', { n: 1 }, { token, taskName: `cw-${++n}` });
      assert.equal(r.status, 401, `${reason}: ${JSON.stringify(r.body)}`);
      assert.equal(handled, before.handled, `${reason}: the handler ran`);
      const logged = logs.lines.slice(before.logs).find((l) => String(l.message).startsWith('task push refused'));
      assert.equal(logged?.authFailure, reason, JSON.stringify(logged));
    },
    async close() {
      await app.close();
      await closeTaskServices(services);
      await issuer.close();
      await db.close();
    },
  };
}

describe(`push route in cloud mode, tokens from a stand-in at Google's issuer names (${testDbKind})`, () => {
  let t: Awaited<ReturnType<typeof cloudApp>>;
  before(async () => {
    t = await cloudApp({});
  });
  after(() => t.close());

  test("Google's issuer names are the two it documents", () => {
    assert.deepEqual(GOOGLE_ISSUERS, ['https://accounts.google.com', 'accounts.google.com']);
  });

  test('a token from either of Google issuer names is accepted', async () => {
    for (const iss of ['https://accounts.google.com', 'accounts.google.com']) {
      const r = await t.pushWith(await t.google({ iss }));
      assert.equal(r.status, 200, `${iss}: ${JSON.stringify(r.body)}`);
      assert.equal(r.outcome, 'succeeded');
    }
  });

  test('another issuer, even with the right key, is refused', async () => {
    await t.refused('issuer-mismatch', await t.issuer.token()); // iss: the stand-in's own URL
    await t.refused('issuer-mismatch', await t.google({ iss: 'https://accounts.google.com.evil.example' }));
  });
  test('another audience is refused', async () =>
    t.refused('audience-mismatch', await t.google({ aud: 'https://other-service.a.run.app' })));
  test('another service account is refused', async () =>
    t.refused('email-mismatch', await t.google({ email: 'attacker@evil.iam.gserviceaccount.com' })));
  test('an unverified e-mail is refused', async () =>
    t.refused('email-unverified', await t.google({ email_verified: false })));
  test('an expired token is refused', async () =>
    t.refused('expired', await t.google({}, { nowSeconds: t.now() - 7200 })));
  test('a token signed by a key Google does not publish is refused', async () =>
    t.refused('signature-invalid', await t.issuer.tokenFromUnknownKey({ iss: 'https://accounts.google.com' })));
});

describe(`cloud-run-iam: the claims of a token whose signature Cloud Run removed (${testDbKind})`, () => {
  let t: Awaited<ReturnType<typeof cloudApp>>;
  before(async () => {
    t = await cloudApp({ TASKS_AUTH: 'cloud-run-iam' });
  });
  after(() => t.close());

  /** Cloud Run passes the verified token on with its signature replaced. */
  const stripped = async (claims: Record<string, unknown> = {}, nowSeconds?: number) => {
    const [header, payload] = (await t.google(claims, { nowSeconds })).split('.');
    return `${header}.${payload}.SIGNATURE_REMOVED_BY_GOOGLE`;
  };

  test('the claims Cloud Tasks sends are accepted, at either issuer name', async () => {
    for (const iss of GOOGLE_ISSUERS) {
      const r = await t.pushWith(await stripped({ iss }));
      assert.equal(r.status, 200, `${iss}: ${JSON.stringify(r.body)}`);
    }
  });
  test('issuer', async () => {
    await t.refused('issuer-mismatch', await stripped({ iss: 'https://evil.example' }));
    await t.refused('issuer-mismatch', await stripped({ iss: undefined }));
  });
  test('audience', async () => {
    await t.refused('audience-mismatch', await stripped({ aud: 'https://other-service.a.run.app' }));
    await t.refused('audience-mismatch', await stripped({ aud: [`${t.config.tasks.oidcAudience}/tasks/test.echo`] }));
  });
  test('e-mail', async () => {
    await t.refused('email-mismatch', await stripped({ email: 'attacker@evil.iam.gserviceaccount.com' }));
    await t.refused('email-unverified', await stripped({ email_verified: 'true' }));
  });
  test('exp', async () => {
    await t.refused('expired', await stripped({}, t.now() - 3600 - 31)); // expired 31 s ago: past the tolerance
    await t.refused('expired', await stripped({ exp: undefined }));
  });
  test('nbf', async () => {
    await t.refused('not-yet-valid', await stripped({ nbf: t.now() + 31 }));
    assert.equal((await t.pushWith(await stripped({ nbf: t.now() + 20 }))).status, 200, 'within the 30 s tolerance');
  });
  test('no token, or not a JWT', async () => {
    await t.refused('credentials-missing', null);
    await t.refused('token-malformed', 'header.payload.x');
  });
});

describe('the real binary', () => {
  // Each refused before anything starts: exit 1, one line on stderr naming the variables.
  const unsafe: Array<[string, Record<string, string>, RegExp]> = [
    [
      'cloud-run-iam with the local backend',
      { TASKS_AUTH: 'cloud-run-iam' },
      /^backend: invalid configuration: TASKS_AUTH=cloud-run-iam is refused with TASKS_BACKEND=emulator: /,
    ],
    [
      'cloud-run-iam with HOST',
      { ...CLOUD, TASKS_AUTH: 'cloud-run-iam', HOST: '127.0.0.1' },
      /^backend: invalid configuration: TASKS_AUTH=cloud-run-iam is refused with HOST="127.0.0.1": /,
    ],
    [
      'cloud-run-iam with the webhooks',
      { ...CLOUD, TASKS_AUTH: 'cloud-run-iam', WHATSAPP_APP_SECRET: 'meta', STRIPE_WEBHOOK_SECRET: 'whsec_x' },
      /^backend: invalid configuration: TASKS_AUTH=cloud-run-iam is refused with WHATSAPP_APP_SECRET and STRIPE_WEBHOOK_SECRET set: /,
    ],
    [
      'secret mode in cloud without a secret',
      { ...CLOUD, TASKS_AUTH: 'secret' },
      /^backend: invalid configuration: TASK_SECRET is required when TASKS_AUTH=secret: /,
    ],
    [
      'an http:// PUBLIC_BASE_URL in cloud mode',
      { ...CLOUD, PUBLIC_BASE_URL: 'http://backend.example.com' },
      /^backend: invalid configuration: PUBLIC_BASE_URL="http:\/\/backend.example.com" is not valid when TASKS_BACKEND=cloud: /,
    ],
  ];
  for (const [label, env, line] of unsafe) {
    test(`serve refuses ${label}: exit 1 with one line`, async () => {
      const r = await runBackend(['serve'], { DATABASE_URL: 'memory://', ...env });
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, line);
      assert.equal(r.stdout, '', 'nothing started');
    });
  }

  for (const command of ['serve', 'migrate']) {
    test(`${command} in cloud mode without DATABASE_URL: exit 1 with one line, nothing written to DATA_DIR`, async () => {
      const dataDir = join(mkdtempSync(join(tmpdir(), 'cloud-no-db-')), 'data');
      const r = await runBackend([command], { ...CLOUD, DATA_DIR: dataDir });
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^backend: invalid configuration: DATABASE_URL is required when TASKS_BACKEND=cloud: /);
      assert.equal(existsSync(dataDir), false, 'no embedded database was created');
    });
  }

  test('in cloud mode the start banner carries no signed webhook', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cloud-banner-'));
    const ports = await servicePorts();
    const service = startBackend(['serve'], {
      ...ports,
      ...CLOUD,
      DATA_DIR: dataDir,
      DATABASE_URL: 'memory://',
      WHATSAPP_APP_SECRET: 'a-meta-app-secret',
      WHATSAPP_VERIFY_TOKEN: 'verify-me',
    });
    try {
      await service.waitForLine(/backend is running on/);
      await service.waitForLine(/npx backend runs list --status dead/);
      const out = service.output();
      assert.doesNotMatch(out, /x-hub-signature-256|sha256=|curl /i, out);
      // The webhook itself is there: only the ready-made request is not printed.
      const r = await fetch(`http://127.0.0.1:${ports.PORT}/webhooks/whatsapp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(r.status, 403);
    } finally {
      service.child.kill('SIGTERM');
      await service.exit;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
