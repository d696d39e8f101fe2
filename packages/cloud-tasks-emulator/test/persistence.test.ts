// State in a data directory survives a kill: `cloud-tasks-emulator` is run as a child process, given
// queues, tasks and a job, and SIGKILLed; an emulator restarted on the same directory still has
// every acknowledged task and delivers it. Also the command's help, bad usage and clean stop.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  PARENT,
  rejection,
  schedulerClient,
  serviceHeaders,
  startTarget,
  startTestEmulator,
  tasksClient,
} from './helpers.ts';

const BIN = fileURLToPath(new URL('../bin/cloud-tasks-emulator.js', import.meta.url));

interface Child {
  process: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

function runCli(args: string[]): Child {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  return { process: child, output: () => output, exit: once(child, 'exit').then(([code]) => code as number | null) };
}

/** Resolves with the ports once the banner is printed; rejects if the process ends first. */
async function ports(child: Child): Promise<{ grpcPort: number; httpPort: number; httpUrl: string }> {
  const ready = new Promise<{ grpcPort: number; httpPort: number; httpUrl: string }>((resolve) => {
    const check = () => {
      const grpc = /gRPC\s+127\.0\.0\.1:(\d+)/.exec(child.output());
      const rest = /REST\s+(http:\/\/127\.0\.0\.1:(\d+))/.exec(child.output());
      if (grpc && rest) resolve({ grpcPort: Number(grpc[1]), httpPort: Number(rest[2]), httpUrl: rest[1]! });
    };
    child.process.stdout!.on('data', check);
    check();
  });
  const died = child.exit.then((code) => {
    throw new Error(`the emulator exited (${code}) before it was ready:\n${child.output()}`);
  });
  return Promise.race([ready, died]);
}

async function kid(httpUrl: string): Promise<string> {
  const jwks = (await (await fetch(`${httpUrl}/jwks`)).json()) as { keys: { kid: string }[] };
  return jwks.keys[0]!.kid;
}

describe('persistence', () => {
  test('a SIGKILLed emulator loses no acknowledged task; a restart on its directory delivers them all', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'emulator-data-'));
    const target = await startTarget();
    t.after(async () => {
      await target.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const child = runCli(['--grpc-port', '0', '--http-port', '0', '--data-dir', dir]);
    t.after(() => child.process.kill('SIGKILL'));
    const { grpcPort, httpPort, httpUrl } = await ports(child);
    const remote = { grpcPort, httpPort };
    const client = tasksClient(remote, 'grpc');
    const scheduler = schedulerClient(remote, 'rest');
    const queue = `${PARENT}/queues/durable`;
    await client.createQueue({ parent: PARENT, queue: { name: queue, retryConfig: { maxAttempts: 5 } } });
    await scheduler.createJob({
      parent: PARENT,
      job: { name: `${PARENT}/jobs/yearly`, schedule: '0 0 1 1 *', httpTarget: { uri: target.url } },
    });
    // Due in 30 minutes, so the child (on the system clock) does not deliver them before the kill.
    const due = Math.floor(Date.now() / 1000) + 1800;
    await client.createTask({
      parent: queue,
      task: { name: `${queue}/tasks/deleted`, httpRequest: { url: target.url }, scheduleTime: { seconds: due } },
    });
    await client.deleteTask({ name: `${queue}/tasks/deleted` });
    const keyBefore = await kid(httpUrl);
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        client.createTask({
          parent: queue,
          task: {
            ...(i % 2 === 0 ? { name: `${queue}/tasks/t-${i}` } : {}),
            httpRequest: { url: `${target.url}/n/${i}`, body: Buffer.from(String(i)) },
            scheduleTime: { seconds: due },
          },
        }),
      ),
    );
    // Killed the moment the last acknowledgement arrives: no clean shutdown, no flush.
    child.process.kill('SIGKILL');
    assert.equal(await child.exit, null, 'killed, not exited');
    await Promise.all([client.close(), scheduler.close()]);

    // Restarted in-process on the same directory, with the clock at the tasks' due time.
    const { emulator, clock } = await startTestEmulator({ dataDir: dir }, due * 1000);
    const restarted = tasksClient(emulator, 'grpc');
    const restartedScheduler = schedulerClient(emulator, 'grpc');
    t.after(() => Promise.all([restarted.close(), restartedScheduler.close(), emulator.close()]));
    const [listed] = await restarted.listTasks({ parent: queue });
    assert.deepEqual(listed.map((task) => task.name).sort(), created.map(([task]) => task.name).sort());
    const [job] = await restartedScheduler.getJob({ name: `${PARENT}/jobs/yearly` });
    assert.equal(job.schedule, '0 0 1 1 *');
    assert.equal(await kid(emulator.httpUrl), keyBefore, 'the signing key was kept');
    const tombstone = await rejection(
      restarted.createTask({
        parent: queue,
        task: { name: `${queue}/tasks/deleted`, httpRequest: { url: target.url } },
      }),
    );
    assert.equal(tombstone.code, 6, 'the tombstone of the deleted task was kept');

    await emulator.tick();
    assert.equal(target.requests.length, 40);
    assert.deepEqual(target.requests.map((r) => r.path).sort(), Array.from({ length: 40 }, (_, i) => `/n/${i}`).sort());
    for (const request of target.requests) {
      const i = Number(request.path.slice('/n/'.length));
      assert.equal(request.body.toString(), String(i));
      if (i % 2 === 0) assert.equal(serviceHeaders(request.headers)['X-CloudTasks-TaskName'], `t-${i}`);
    }

    // Deliveries are recorded too: after a clean restart the queue is empty and the names are taken.
    await emulator.close();
    const again = await startTestEmulator({ dataDir: dir }, clock.now());
    const third = tasksClient(again.emulator, 'rest');
    t.after(() => Promise.all([third.close(), again.emulator.close()]));
    const [empty] = await third.listTasks({ parent: queue });
    assert.equal(empty.length, 0);
    const taken = await rejection(
      third.createTask({ parent: queue, task: { name: `${queue}/tasks/t-0`, httpRequest: { url: target.url } } }),
    );
    assert.equal(taken.code, 6);
    assert.match(taken.details, /existed too recently/);
  });

  test('without a data directory nothing is kept', async (t) => {
    const first = await startTestEmulator();
    const client = tasksClient(first.emulator, 'grpc');
    await client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/gone` } });
    await Promise.all([client.close(), first.emulator.close()]);
    const second = await startTestEmulator();
    const again = tasksClient(second.emulator, 'grpc');
    t.after(() => Promise.all([again.close(), second.emulator.close()]));
    const [queues] = await again.listQueues({ parent: PARENT });
    assert.equal(queues.length, 0);
  });
});

describe('cloud-tasks-emulator', () => {
  test('--help describes the options and exits 0; a bad port exits 2', async () => {
    const help = runCli(['--help']);
    assert.equal(await help.exit, 0);
    for (const option of ['--grpc-port', '--http-port', '--data-dir', '--host'])
      assert.match(help.output(), new RegExp(option));
    const bad = runCli(['--http-port', 'eighty']);
    assert.equal(await bad.exit, 2);
    assert.match(bad.output(), /--http-port/);
  });

  test('prints the endpoints and client settings, serves them, and stops cleanly on SIGTERM', async (t) => {
    const child = runCli(['--grpc-port', '0', '--http-port', '0']);
    t.after(() => child.process.kill('SIGKILL'));
    const { grpcPort, httpUrl } = await ports(child);
    assert.match(child.output(), new RegExp(`CLOUD_TASKS_EMULATOR_HOST=127\\.0\\.0\\.1:${grpcPort}`));
    assert.match(child.output(), /fallback: 'rest'/);
    const discovery = (await (await fetch(`${httpUrl}/.well-known/openid-configuration`)).json()) as { issuer: string };
    assert.equal(discovery.issuer, httpUrl);
    child.process.kill('SIGTERM');
    assert.equal(await child.exit, 0);
  });
});
