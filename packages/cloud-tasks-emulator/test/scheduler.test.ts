// Cloud Scheduler jobs through the official client, over both transports: cron in a time zone,
// the X-CloudScheduler* headers (ScheduleTime constant across retries), retry config, RunJob,
// pause/resume, never two runs at once, and the errors.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import {
  collect,
  PARENT,
  rejection,
  START,
  schedulerClient,
  serviceHeaders,
  startTarget,
  startTestEmulator,
  TRANSPORTS,
} from './helpers.ts';

const SA = 'scheduler@dev.iam.gserviceaccount.com';

for (const transport of TRANSPORTS) {
  describe(`scheduler, over ${transport}`, () => {
    test('a job runs at its cron time in its zone, with the scheduler headers, ScheduleTime constant across retries', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget((_req, i) => [500, 503, 200][i] ?? 200);
      const client = schedulerClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const name = `${PARENT}/jobs/nightly-report`;
      const [job] = await client.createJob({
        parent: PARENT,
        job: {
          name,
          description: 'nightly',
          schedule: '30 2 * * *',
          timeZone: 'America/New_York',
          httpTarget: {
            uri: `${target.url}/tasks/report`,
            httpMethod: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: Buffer.from('{}'),
            oidcToken: { serviceAccountEmail: SA },
          },
          retryConfig: { retryCount: 3, minBackoffDuration: { seconds: 5 } },
        },
      });
      // 02:30 in New York on 2026-01-01 is 07:30 UTC.
      const runAt = Date.parse('2026-01-01T07:30:00Z');
      assert.equal(Number(job.scheduleTime?.seconds) * 1000, runAt);
      assert.equal(job.state, 'ENABLED');
      assert.equal(Number(job.attemptDeadline?.seconds), 180, 'the 3 min default');
      assert.deepEqual(
        {
          retryCount: job.retryConfig?.retryCount,
          min: Number(job.retryConfig?.minBackoffDuration?.seconds),
          max: Number(job.retryConfig?.maxBackoffDuration?.seconds),
          doublings: job.retryConfig?.maxDoublings,
        },
        { retryCount: 3, min: 5, max: 3600, doublings: 5 },
      );

      clock.set(runAt - 1);
      await emulator.tick();
      assert.equal(target.requests.length, 0, 'not before its time');
      const retries = collect(emulator, 'job:retry-scheduled');
      const succeeded = emulator.events.waitFor('job:succeeded');
      clock.set(runAt);
      await emulator.tick();
      clock.set(retries[0]!.retryAt);
      await emulator.tick();
      clock.set(retries[1]!.retryAt);
      await emulator.tick();
      assert.equal((await succeeded).attempt, 3);
      assert.deepEqual(
        retries.map((r) => r.delayMs),
        [5_000, 10_000],
      );
      assert.equal(target.requests.length, 3);
      for (const request of target.requests) {
        assert.deepEqual(serviceHeaders(request.headers), {
          'User-Agent': 'Google-Cloud-Scheduler',
          'X-CloudScheduler': 'true',
          'X-CloudScheduler-JobName': 'nightly-report',
          'X-CloudScheduler-ScheduleTime': '2026-01-01T07:30:00Z',
        });
        assert.equal(request.headers['Content-Type'], 'application/json');
        assert.equal(request.body.toString(), '{}');
      }
      const token = target.requests[0]!.headers.Authorization!.slice('Bearer '.length);
      const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(emulator.jwksUri)), {
        issuer: emulator.issuer,
        audience: `${target.url}/tasks/report`,
        currentDate: new Date(clock.now()),
      });
      assert.equal(payload.email, SA);

      const [after] = await client.getJob({ name });
      assert.equal(Number(after.lastAttemptTime?.seconds) * 1000, retries[1]!.retryAt);
      assert.equal(after.status?.code ?? 0, 0);
      assert.equal(Number(after.scheduleTime?.seconds) * 1000, Date.parse('2026-01-02T07:30:00Z'), 'the next night');
    });

    test('retries stop at retryCount, and never run past the next scheduled time', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget(() => 500);
      const client = schedulerClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const every = `${PARENT}/jobs/every-minute`;
      await client.createJob({
        parent: PARENT,
        job: {
          name: every,
          schedule: '* * * * *',
          httpTarget: { uri: target.url, body: Buffer.from('ping') },
          retryConfig: { retryCount: 5, minBackoffDuration: { seconds: 20 } },
        },
      });
      const failed = collect(emulator, 'job:failed');
      const retries = collect(emulator, 'job:retry-scheduled');
      clock.set(START + 60_000);
      await emulator.tick(); // attempt 1 at :01:00, retry at +20 s
      clock.set(retries[0]!.retryAt);
      await emulator.tick(); // attempt 2 at :01:20, the next retry (+40 s) would reach :02:00
      assert.equal(retries.length, 1);
      assert.equal(failed.length, 1);
      // Unlike Cloud Tasks, Cloud Scheduler gives a body without a Content-Type a default one.
      assert.equal(target.requests[0]!.headers['Content-Type'], 'application/octet-stream');
      assert.equal(failed[0]!.attempt, 2);
      const [job] = await client.getJob({ name: every });
      assert.equal(job.status?.code, 13, 'a 500 counts as INTERNAL');
      assert.equal(Number(job.scheduleTime?.seconds) * 1000, START + 120_000);
    });

    test('RunJob runs now; a paused job waits; resume schedules from now; never two runs at once', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      let release!: () => void;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const target = await startTarget(async (_req, i) => {
        if (i === 1) await held; // the second request hangs until released
        return 200;
      });
      const client = schedulerClient(emulator, transport);
      t.after(async () => {
        release();
        await Promise.all([client.close(), emulator.close(), target.close()]);
      });
      const name = `${PARENT}/jobs/minutely`;
      await client.createJob({ parent: PARENT, job: { name, schedule: '* * * * *', httpTarget: { uri: target.url } } });

      const [paused] = await client.pauseJob({ name });
      assert.equal(paused.state, 'PAUSED');
      assert.equal(paused.scheduleTime, null);
      clock.advance(5 * 60_000);
      await emulator.tick();
      assert.equal(target.requests.length, 0, 'a paused job does not run');
      const ran = emulator.events.waitFor('job:succeeded');
      await client.runJob({ name });
      const forced = await ran;
      assert.equal(forced.scheduleTime, clock.now());
      assert.equal(target.requests.length, 1);

      const [resumed] = await client.resumeJob({ name });
      assert.equal(resumed.state, 'ENABLED');
      assert.equal(Number(resumed.scheduleTime?.seconds) * 1000, START + 6 * 60_000);
      const dispatched = collect(emulator, 'job:dispatched');
      clock.set(START + 6 * 60_000);
      const slow = emulator.tick(); // the 06:00 run hangs
      await target.received(2);
      clock.set(START + 9 * 60_000 + 30_000);
      // Its time has come three times over, but one run is still out: nothing else starts.
      await client.runJob({ name });
      assert.equal(dispatched.length, 1);
      release();
      await slow;
      // Then the RunJob that waited, and one late run for the latest missed time (not one per missed minute).
      await emulator.tick();
      await emulator.tick();
      await emulator.tick();
      assert.deepEqual(
        dispatched.map((d) => [d.scheduleTime - START, d.forced]),
        [
          [6 * 60_000, false],
          [9 * 60_000 + 30_000, true],
          [9 * 60_000, false],
        ],
      );
      const [job] = await client.getJob({ name });
      assert.equal(Number(job.scheduleTime?.seconds) * 1000, START + 10 * 60_000);
    });

    test('list, update (masked), delete, and the errors', async (t) => {
      const { emulator } = await startTestEmulator();
      const client = schedulerClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close()]));
      const name = `${PARENT}/jobs/b`;
      const httpTarget = { uri: 'http://127.0.0.1:1/' };
      await client.createJob({ parent: PARENT, job: { name, schedule: '0 * * * *', httpTarget } });
      await client.createJob({ parent: PARENT, job: { name: `${PARENT}/jobs/a`, schedule: '0 * * * *', httpTarget } });
      const [jobs] = await client.listJobs({ parent: PARENT });
      assert.deepEqual(
        jobs.map((j) => j.name),
        [`${PARENT}/jobs/a`, name],
      );
      const [updated] = await client.updateJob({
        job: { name, schedule: '15 * * * *', description: 'not in the mask' },
        updateMask: { paths: ['schedule'] },
      });
      assert.equal(updated.schedule, '15 * * * *');
      assert.equal(updated.description, '');
      assert.equal(Number(updated.scheduleTime?.seconds) * 1000, START + 15 * 60_000);

      const code = async (p: Promise<unknown>) => (await rejection(p)).code;
      assert.equal(
        await code(client.createJob({ parent: PARENT, job: { name, schedule: '0 * * * *', httpTarget } })),
        6,
      );
      const bad = await rejection(
        client.createJob({
          parent: PARENT,
          job: { name: `${PARENT}/jobs/c`, schedule: 'every 5 minutes', httpTarget },
        }),
      );
      assert.deepEqual(bad, { code: 3, details: 'Schedule or time zone is invalid.' });
      const zone = await rejection(
        client.createJob({
          parent: PARENT,
          job: { name: `${PARENT}/jobs/c`, schedule: '0 * * * *', timeZone: 'Mars/Olympus', httpTarget },
        }),
      );
      assert.equal(zone.code, 3);
      assert.equal(
        await code(
          client.createJob({
            parent: PARENT,
            job: { name: `${PARENT}/jobs/c`, schedule: '0 * * * *', httpTarget, retryConfig: { retryCount: 6 } },
          }),
        ),
        3,
      );
      assert.equal(
        await code(
          client.createJob({
            parent: PARENT,
            job: { name: `${PARENT}/jobs/c`, schedule: '0 * * * *', httpTarget, attemptDeadline: { seconds: 5 } },
          }),
        ),
        3,
      );
      assert.equal(await code(client.getJob({ name: `${PARENT}/jobs/none` })), 5);
      await client.deleteJob({ name });
      assert.equal(await code(client.getJob({ name })), 5);
      assert.equal(await code(client.runJob({ name })), 5);
    });
  });
}
