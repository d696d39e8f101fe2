// Cloud Tasks v2beta3 through the official client's v2beta3 class, over both transports: queue
// stats on GetQueue and ListQueues when the read mask asks for them (tasks waiting, the nearest
// schedule time, responses in the last minute), and pause, resume and purge on the same queues v2
// sees.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { v2beta3 } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import * as gax from 'google-gax';
import {
  PARENT,
  PROJECT,
  START,
  startTarget,
  startTestEmulator,
  TRANSPORTS,
  type Transport,
  tasksClient,
} from './helpers.ts';

const INVALID_ARGUMENT = 3;

function betaClient(emulator: { grpcPort: number; httpPort: number }, transport: Transport): v2beta3.CloudTasksClient {
  const common = { apiEndpoint: '127.0.0.1', authClient: new PassThroughClient(), projectId: PROJECT };
  return new v2beta3.CloudTasksClient(
    transport === 'grpc'
      ? { ...common, port: emulator.grpcPort, sslCreds: gax.grpc.credentials.createInsecure() }
      : { ...common, port: emulator.httpPort, fallback: 'rest', protocol: 'http' },
  );
}

for (const transport of TRANSPORTS) {
  describe(`v2beta3 queue stats, over ${transport}`, () => {
    test('stats count the tasks waiting, only when the read mask asks; pause, resume and purge act on the same queue', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget();
      const v2 = tasksClient(emulator, transport);
      const beta = betaClient(emulator, transport);
      t.after(() => Promise.all([v2.close(), beta.close(), target.close(), emulator.close()]));
      const name = `${PARENT}/queues/work`;
      await v2.createQueue({ parent: PARENT, queue: { name } });
      await v2.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/idle` } });
      const later = START + 60_000;
      for (const [i, at] of [START + 120_000, later, START + 90_000].entries()) {
        await v2.createTask({
          parent: name,
          task: {
            name: `${name}/tasks/t${i}`,
            httpRequest: { url: `${target.url}/t${i}`, httpMethod: 'POST' },
            scheduleTime: { seconds: Math.floor(at / 1000) },
          },
        });
      }

      // Without a mask: every field but stats (v2beta3 GetQueueRequest.read_mask).
      const [plain] = await beta.getQueue({ name });
      assert.equal(plain.state, 'RUNNING');
      assert.equal(plain.rateLimits?.maxDispatchesPerSecond, 500);
      assert.equal(plain.stats, null);

      const [withStats] = await beta.getQueue({ name, readMask: { paths: ['stats'] } });
      assert.equal(Number(withStats.stats?.tasksCount), 3);
      assert.equal(Number(withStats.stats?.oldestEstimatedArrivalTime?.seconds), later / 1000);
      assert.equal(Number(withStats.stats?.executedLastMinuteCount ?? 0), 0);
      assert.equal(withStats.rateLimits, null, 'only what the mask names');

      const [queues] = await beta.listQueues({ parent: PARENT, readMask: { paths: ['name', 'state', 'stats'] } });
      assert.deepEqual(
        queues.map((q) => [q.name, q.state, Number(q.stats?.tasksCount ?? 0)]),
        [
          [`${PARENT}/queues/idle`, 'RUNNING', 0],
          [name, 'RUNNING', 3],
        ],
      );

      // Two tasks come due and are answered: they leave the queue and count as executed.
      clock.set(START + 100_000);
      await emulator.tick();
      assert.equal(target.requests.length, 2);
      const [afterRun] = await beta.getQueue({ name, readMask: { paths: ['stats'] } });
      assert.equal(Number(afterRun.stats?.tasksCount), 1);
      assert.equal(Number(afterRun.stats?.executedLastMinuteCount), 2);
      clock.set(START + 170_000);
      const [aMinuteLater] = await beta.getQueue({ name, readMask: { paths: ['stats'] } });
      assert.equal(Number(aMinuteLater.stats?.executedLastMinuteCount ?? 0), 0, 'older than a minute');

      await beta.pauseQueue({ name });
      const [seenByV2] = await v2.getQueue({ name });
      assert.equal(seenByV2.state, 'PAUSED');
      await beta.resumeQueue({ name });
      assert.equal((await v2.getQueue({ name }))[0].state, 'RUNNING');
      await beta.purgeQueue({ name });
      const [purged] = await beta.getQueue({ name, readMask: { paths: ['stats', 'purgeTime'] } });
      assert.equal(Number(purged.stats?.tasksCount ?? 0), 0);
      assert.ok(purged.purgeTime);

      await assert.rejects(beta.getQueue({ name, readMask: { paths: ['nonsense'] } }), { code: INVALID_ARGUMENT });
    });
  });
}
