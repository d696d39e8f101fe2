// The `cloud-tasks-emulator` binary: --version from package.json, --help listing every option, bad
// values refused before anything starts, and a start on free ports that answers and stops cleanly.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/cloud-tasks-emulator.js', import.meta.url));
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
};

const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('the cloud-tasks-emulator binary', () => {
  test('package.json names it, and --version prints the package version', () => {
    assert.deepEqual(manifest.bin, { 'cloud-tasks-emulator': 'bin/cloud-tasks-emulator.js' });
    const result = run('--version');
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${manifest.version}\n`);
  });

  test('--help lists every option', () => {
    const result = run('--help');
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^Usage: cloud-tasks-emulator \[options\]/);
    for (const option of [
      '--grpc-port <port>',
      '--http-port <port>',
      '--data-dir <dir>',
      '--host <host>',
      '--allow-host <name>',
      '--queue <name>',
      '--issuer <url>',
      '--task-tombstone <duration>',
      '--queue-tombstone <duration>',
      '-V, --version',
      '-h, --help',
    ]) {
      assert.ok(result.stdout.includes(option), `--help shows ${option}`);
    }
  });

  test('a bad value is refused with the option named, exit code 2 (bad usage), nothing started', () => {
    for (const [args, message] of [
      [['--grpc-port', '70000'], /option '--grpc-port <port>' argument '70000' is invalid\. expected a port number/],
      [['--queue-tombstone', 'soon'], /expected a duration such as 7d, 1h, 30m, 90s or 0/],
      [['--no-such-option'], /unknown option '--no-such-option'/],
    ] as const) {
      const result = run(...args);
      assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
      assert.equal(result.stdout, '', 'no banner: nothing started');
    }
  });

  test('a malformed --queue stops the start with the reason and exit code 1', () => {
    const result = run('--grpc-port', '0', '--http-port', '0', '--queue', 'projects/p/queues/q');
    assert.equal(result.status, 1);
    assert.match(result.stderr, /--queue projects\/p\/queues\/q: Queue name must be formatted/);
  });

  test('starts on free ports, prints where, answers REST, and exits 0 on SIGTERM', async (t) => {
    const child = spawn(process.execPath, [BIN, '--grpc-port', '0', '--http-port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const restUrl = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        const m = /REST\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m && /gRPC\s+127\.0\.0\.1:\d+/.test(out)) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}${err}`)));
    });
    assert.match(
      out,
      new RegExp(`^Cloud Tasks v2 \\+ Cloud Scheduler v1 emulator ${manifest.version.replaceAll('.', '\\.')}\n`),
    );
    const response = await fetch(`${restUrl}/v2/projects/dev/locations/local/queues`);
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { queues?: unknown[] }).queues, undefined, 'no queue yet');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
    assert.match(err, /received SIGTERM, stopping the emulator\nemulator stopped cleanly\n$/);
  });
});
