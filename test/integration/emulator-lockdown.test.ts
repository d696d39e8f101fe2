// The forged top-up, replayed against the whole local system: a web page open in the developer's
// browser POSTs a CreateTask for credits.topup to the embedded emulator's REST port, the way a
// no-cors fetch sends it (text/plain body, Origin header). The emulator would sign an OIDC token
// for the service account the body names and the service would credit the account; it must be
// refused before any task exists. The same body sent as a program sends it (JSON, no Origin) is
// the control: it goes through and credits, so the refusal is what stops the forgery.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { balanceOf, createAccount } from '../../src/domains/credits/credits.service.ts';
import { type Service, startService } from '../../src/main.ts';
import { taskRuns } from '../../src/tasks/task-runs.repository.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { freePort } from '../helpers/cli-process.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

/** One HTTP/1.1 request with exactly these headers; resolves with the status. */
function post(url: string, headers: Record<string, string>, body: string): Promise<number> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: hostname, port, method: 'POST', path: pathname, headers: { Host: `${hostname}:${port}`, ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe(`a web page cannot make the local emulator credit an account (${testDbKind})`, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'backend-lockdown-'));
  let pg: TestDb | undefined;
  let service: Service;

  before(async () => {
    const port = await freePort();
    pg = testDbKind === 'postgres' ? await createTestDb() : undefined;
    service = await startService(
      loadConfig({
        PORT: String(port),
        HOST: '127.0.0.1',
        PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
        DATA_DIR: dataDir,
        EMULATOR_GRPC_PORT: '0',
        EMULATOR_HTTP_PORT: '0',
        ...(pg?.url ? { DATABASE_URL: pg.url } : {}),
      }),
      { logger: captureLogger('warn').logger },
    );
  });
  after(async () => {
    await service.close();
    await pg?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the forged credits.topup request is refused: no task, no run, balance unchanged; as JSON from a program it credits', async () => {
    const { config } = service;
    const emulator = service.emulator!;
    const accountId = await createAccount(service.db);
    assert.equal(await balanceOf(service.db, accountId), 0);
    const created: string[] = [];
    emulator.events.on('task:created', (e) => created.push(e.task));

    const queue = `projects/${config.tasks.projectId}/locations/${config.tasks.location}/queues/credits`;
    const createTaskUrl = `${emulator.httpUrl}/v2/${queue}/tasks`;
    // What the attacker's page builds: the push the service trusts, with the token the emulator signs.
    const body = (paymentIntentId: string) =>
      JSON.stringify({
        task: {
          httpRequest: {
            url: `${config.tasks.pushBaseUrl}/tasks/credits.topup`,
            httpMethod: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: Buffer.from(JSON.stringify({ accountId, credits: 1_000_000, paymentIntentId })).toString('base64'),
            oidcToken: {
              serviceAccountEmail: config.tasks.invokerServiceAccount,
              audience: config.tasks.oidcAudience,
            },
          },
        },
      });

    // fetch(createTaskUrl, { method: 'POST', mode: 'no-cors', body }) from https://attacker.example
    const forged = await post(
      createTaskUrl,
      { Origin: 'https://attacker.example', 'Content-Type': 'text/plain;charset=UTF-8' },
      body('pi_forged'),
    );
    assert.equal(forged, 403);
    // The same page through DNS rebinding (its own name now resolving to 127.0.0.1): no Origin
    // on a same-origin request is not something to count on, but the Host names the attacker.
    const rebound = await post(
      createTaskUrl,
      { Host: `attacker.example:${emulator.httpPort}`, 'Content-Type': 'application/json' },
      body('pi_rebound'),
    );
    assert.equal(rebound, 403);
    // A form post, which a page can also make.
    const form = await post(createTaskUrl, { 'Content-Type': 'application/x-www-form-urlencoded' }, body('pi_form'));
    assert.equal(form, 415);

    assert.equal(created.length, 0, 'no task was created');
    const [waiting] = await service.clients.tasks.listTasks({ parent: queue });
    assert.deepEqual(waiting, []);
    for (const pi of ['pi_forged', 'pi_rebound', 'pi_form']) {
      assert.equal(await taskRuns.findRun(service.db, 'credits.topup', `stripe:pi:${pi}`), undefined, pi);
    }
    assert.equal(await balanceOf(service.db, accountId), 0, 'nothing was credited');

    // The control: the same request as curl or a client library sends it. (The emulator's
    // task:succeeded comes once the push was answered 200, after the top-up committed.)
    const done = emulator.events.waitFor('task:succeeded', (e) => e.task.startsWith(`${queue}/tasks/`));
    assert.equal(await post(createTaskUrl, { 'Content-Type': 'application/json' }, body('pi_program')), 200);
    await done;
    const run = await taskRuns.findRun(service.db, 'credits.topup', 'stripe:pi:pi_program');
    assert.equal(run?.status, 'succeeded');
    assert.equal(created.length, 1);
    assert.equal(await balanceOf(service.db, accountId), 1_000_000);
  });
});
