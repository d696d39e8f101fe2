// Cloud mode where Google gives the process no credentials (no metadata server, no key file): a
// call through the official clients must fail by itself, never end the process. Without the lazy
// credentials of cloud-clients.ts the generated clients' initialisation rejects a promise nothing
// handles, and Node ends the process.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { createCloudClients } from '../../src/tasks/cloud-clients.ts';

test('a Google call without credentials fails alone and leaves no unhandled rejection behind', async () => {
  process.env.METADATA_SERVER_DETECTION = 'none';
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  process.env.HOME = '/nonexistent'; // no gcloud well-known credentials file either
  // A port on this machine that nothing listens on: no byte leaves it.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  probe.close();

  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const clients = createCloudClients({
    emulator: undefined,
    projectId: 'p',
    // TLS and the clients' own credentials, as in production; only the address is local.
    google: { apiEndpoint: '127.0.0.1', port },
  });
  try {
    const name = clients.tasks.queuePath('p', 'us-central1', 'maintenance');
    for (let i = 0; i < 2; i++) {
      await assert.rejects(clients.tasks.getQueue({ name }, { timeout: 3_000, retry: null }));
    }
    // Let any stray rejection surface before looking.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await clients.close();
  }
});
