// The package as another project gets it: `npm pack` (which builds dist/), a fresh folder with only
// that tarball installed, `npx cloud-tasks-emulator` started there with the node on the system PATH
// (none of this repository's tools), and a Python-style REST call made with curl (snake_case proto
// field names) creating a queue and a task with http_request + oidc_token. The task must reach a
// local target with Cloud Tasks' headers and a token that verifies against /certs read as X.509.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serviceHeaders, startTarget, type Target } from './helpers.ts';

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
/** The repository holding the package: nothing under it may be on PATH for the fresh folder. */
const REPOSITORY = path.resolve(PACKAGE_DIR, '../..');
const SERVICE_ACCOUNT = 'tasks@dev.iam.gserviceaccount.com';
const AUDIENCE = 'https://worker.example';
const QUEUE = 'projects/dev/locations/local/queues/default';

/** PATH as a user has it: without this repository's node_modules/.bin (its Node 24 and its bins). */
const systemPath = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter((dir) => dir && !path.resolve(dir).startsWith(`${REPOSITORY}${path.sep}`))
  .join(path.delimiter);
const systemEnv: NodeJS.ProcessEnv = { ...process.env, PATH: systemPath };
for (const key of Object.keys(systemEnv)) {
  // npm sets these when the suite runs under `npm test`; a fresh shell has none of them.
  if (key.startsWith('npm_') || key === 'INIT_CWD' || key === 'NODE') delete systemEnv[key];
}

const curl = spawnSync('curl', ['--version'], { env: systemEnv });
const skip =
  curl.error || curl.status !== 0 ? 'curl is not installed: the Python-style REST call is made with curl' : false;

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout: number): string {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout });
  if (result.error || result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** curl -X POST with a JSON body, as a Python script using requests or urllib would send it. */
function curlPost(url: string, body: unknown): { status: number; json: Record<string, unknown> } {
  const out = run(
    'curl',
    [
      '-sS',
      '-X',
      'POST',
      url,
      '-H',
      'Content-Type: application/json',
      '--data-binary',
      JSON.stringify(body),
      '-w',
      '\n%{http_code}',
    ],
    REPOSITORY,
    systemEnv,
    10_000,
  );
  const cut = out.lastIndexOf('\n');
  return { status: Number(out.slice(cut + 1)), json: JSON.parse(out.slice(0, cut)) as Record<string, unknown> };
}

const base64url = (s: string) => Buffer.from(s, 'base64url');

describe('a fresh folder with only the packed package installed', { skip, timeout: 60_000 }, () => {
  let work: string;
  let emulator: ChildProcess | undefined;
  let exited: Promise<[number | null, NodeJS.Signals | null]> | undefined;
  /** SIGTERM to the emulator's process group (npx, its shell and the node running the binary). */
  const stop = () => {
    try {
      process.kill(-emulator!.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  let stderr = '';
  let restUrl = '';
  let nodeVersion = '';
  let target: Target;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'cloud-tasks-emulator-fresh-'));
    // npm pack runs prepack (tsc to dist/) and postpack (dist/ removed again).
    run('npm', ['pack', '--pack-destination', work, '--no-audit', '--no-fund'], PACKAGE_DIR, process.env, 40_000);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');

    const fresh = path.join(work, 'fresh');
    mkdirSync(fresh);
    writeFileSync(path.join(fresh, 'package.json'), '{ "name": "fresh", "private": true }\n');
    run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(work, tarball)],
      fresh,
      systemEnv,
      45_000,
    );
    nodeVersion = run('node', ['--version'], fresh, systemEnv, 5_000).trim();
    target = await startTarget();

    // A process group of its own: npx runs the binary through a shell, and SIGTERM goes to all three.
    emulator = spawn('npx', ['cloud-tasks-emulator', '--grpc-port', '0', '--http-port', '0'], {
      cwd: fresh,
      env: systemEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    exited = once(emulator, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    emulator.stderr!.on('data', (d: Buffer) => {
      stderr += d;
    });
    let out = '';
    restUrl = await new Promise<string>((resolve, reject) => {
      emulator!.stdout!.on('data', (d: Buffer) => {
        out += d;
        const rest = /REST\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (rest) resolve(rest[1]!);
      });
      emulator!.once('exit', (code) => reject(new Error(`cloud-tasks-emulator exited (${code}):\n${out}\n${stderr}`)));
    });
  });

  after(async () => {
    if (emulator?.pid) {
      stop();
      await exited;
    }
    await target?.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('snake_case REST from curl: the task arrives with the real headers and a token /certs verifies', async (t) => {
    t.diagnostic(`node on the system PATH: ${nodeVersion}`);
    // What runs is the tarball's built JavaScript, not a link back to this repository's sources.
    const installed = path.join(work, 'fresh', 'node_modules', '@backend', 'cloud-tasks-emulator');
    assert.equal(lstatSync(installed).isSymbolicLink(), false);
    assert.ok(
      existsSync(path.join(installed, 'dist', 'index.js')) && existsSync(path.join(installed, 'dist', 'index.d.ts')),
    );
    assert.equal(existsSync(path.join(installed, 'src')), false);

    const queue = curlPost(`${restUrl}/v2/projects/dev/locations/local/queues`, {
      name: QUEUE,
      rate_limits: { max_dispatches_per_second: 5 },
      retry_config: { max_attempts: 3 },
    });
    assert.equal(queue.status, 200, JSON.stringify(queue.json));
    assert.deepEqual(
      {
        name: queue.json.name,
        rate: (queue.json.rateLimits as { maxDispatchesPerSecond: number }).maxDispatchesPerSecond,
        attempts: (queue.json.retryConfig as { maxAttempts: number }).maxAttempts,
      },
      { name: QUEUE, rate: 5, attempts: 3 },
      'the snake_case fields were read, not dropped',
    );

    const arrived = target.received(1);
    const task = curlPost(`${restUrl}/v2/${QUEUE}/tasks`, {
      task: {
        name: `${QUEUE}/tasks/from-curl`,
        http_request: {
          url: `${target.url}/work`,
          http_method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: Buffer.from('{"n":1}').toString('base64'),
          oidc_token: { service_account_email: SERVICE_ACCOUNT, audience: AUDIENCE },
        },
      },
    });
    assert.equal(task.status, 200, JSON.stringify(task.json));
    assert.equal(task.json.name, `${QUEUE}/tasks/from-curl`);
    await arrived;

    const request = target.requests[0]!;
    assert.equal(request.method, 'POST');
    assert.equal(request.path, '/work');
    assert.equal(request.body.toString(), '{"n":1}');
    const eta = (Date.parse(task.json.scheduleTime as string) / 1000).toFixed(6);
    assert.deepEqual(serviceHeaders(request.headers), {
      'User-Agent': 'Google-Cloud-Tasks',
      'X-CloudTasks-QueueName': 'default',
      'X-CloudTasks-TaskName': 'from-curl',
      'X-CloudTasks-TaskRetryCount': '0',
      'X-CloudTasks-TaskExecutionCount': '0',
      'X-CloudTasks-TaskETA': eta,
    });
    assert.equal(request.headers['Content-Type'], 'application/json');

    // The token: RS256, signed by a key whose X.509 certificate /certs serves under its kid.
    const authorization = request.headers.Authorization ?? '';
    assert.match(authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const [header, payload, signature] = authorization.slice('Bearer '.length).split('.') as [string, string, string];
    const { alg, kid } = JSON.parse(base64url(header).toString()) as { alg: string; kid: string };
    assert.equal(alg, 'RS256');
    const certs = (await (await fetch(`${restUrl}/certs`)).json()) as Record<string, string>;
    assert.match(certs[kid] ?? '', /^-----BEGIN CERTIFICATE-----\n/);
    const certificate = new X509Certificate(certs[kid]!);
    assert.ok(verify('sha256', Buffer.from(`${header}.${payload}`), certificate.publicKey, base64url(signature)));
    // A certificate of another key does not verify it (the check above can fail).
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    assert.equal(verify('sha256', Buffer.from(`${header}.${payload}`), other, base64url(signature)), false);
    const claims = JSON.parse(base64url(payload).toString()) as Record<string, unknown>;
    assert.deepEqual(
      { iss: claims.iss, aud: claims.aud, email: claims.email, verified: claims.email_verified },
      { iss: restUrl, aud: AUDIENCE, email: SERVICE_ACCOUNT, verified: true },
    );

    // SIGTERM closes it cleanly (npx itself, in the same process group, ends by the signal).
    stop();
    const [code, signal] = await exited!;
    assert.ok(code === 0 || signal === 'SIGTERM', `npx ended with ${code ?? signal}`);
    assert.match(stderr, /received SIGTERM, stopping the emulator\nemulator stopped cleanly\n/);
  });
});
