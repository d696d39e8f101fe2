// `backend emulator` is the emulator package's command line hung under the service's CLI: the same
// options, with the same descriptions and defaults, as the package's own `cloud-tasks-emulator`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BACKEND = fileURLToPath(new URL('../../bin/backend.js', import.meta.url));
const PACKAGE_BIN = fileURLToPath(
  new URL('../../node_modules/@backend/cloud-tasks-emulator/bin/cloud-tasks-emulator.js', import.meta.url),
);

/** The option lines of a --help, without commander's own (help, version). */
function options(bin: string, args: string[]): string[] {
  const result = spawnSync(process.execPath, [bin, ...args, '--help'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(result.status, 0, result.stderr);
  const lines = result.stdout.slice(result.stdout.indexOf('Options:')).split('\n').slice(1);
  return lines
    .filter((l) => l.trim() !== '')
    .join('\n')
    .split(/\n(?= {2}-)/)
    .map((option) => option.replace(/\s+/g, ' ').trim())
    .filter((option) => !/^-h, --help|^-V, --version/.test(option));
}

test('backend emulator offers exactly the options of the package binary, defaults included', () => {
  const service = options(BACKEND, ['emulator']);
  const own = options(PACKAGE_BIN, []);
  assert.ok(own.length >= 9, own.join('\n'));
  assert.ok(own.some((o) => o.startsWith('--queue-tombstone <duration>')));
  assert.deepEqual(service, own);
});
