import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

// The image runs the Node that the tests run on: the Dockerfile's base is pinned to the exact
// version of package.json's `node` devDependency (what `npm test` uses), and changes with it.
const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
const dockerfile = read('Dockerfile');
const pkg = JSON.parse(read('package.json')) as { devDependencies: Record<string, string> };
const instructions = dockerfile
  .split('\n')
  .filter((line) => /^[A-Z]+\s/.test(line))
  .map((line) => line.trim());

describe('Dockerfile', () => {
  test("every stage's base is node:<the pinned node devDependency>-bookworm-slim", () => {
    const pinned = pkg.devDependencies.node;
    assert.match(pinned ?? '', /^\d+\.\d+\.\d+$/, 'package.json pins node to an exact version');
    const bases = instructions.filter((l) => l.startsWith('FROM ')).map((l) => l.split(/\s+/)[1]);
    assert.ok(bases.length >= 2, 'multi-stage: dependencies are installed in a stage of their own');
    for (const base of bases) assert.equal(base, `node:${pinned}-bookworm-slim`);
  });

  test('production dependencies from the lock file, a non-root user, and node itself as PID 1', () => {
    assert.ok(instructions.some((l) => /^RUN npm ci --omit=dev\b/.test(l)));
    const users = instructions.filter((l) => l.startsWith('USER '));
    assert.equal(users.at(-1), 'USER node');
    // Exec form (a JSON array): no shell between the container's signals and node.
    const entrypoint = instructions.find((l) => l.startsWith('ENTRYPOINT '));
    assert.deepEqual(JSON.parse(entrypoint!.slice('ENTRYPOINT '.length)), ['node', 'bin/backend.js']);
    const cmd = instructions.find((l) => l.startsWith('CMD '));
    assert.deepEqual(JSON.parse(cmd!.slice('CMD '.length)), ['serve']);
  });

  test("each npm workspace's manifest is copied before npm ci, and its code into the image", () => {
    const workspaces = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;
    assert.deepEqual(workspaces, ['packages/*']);
    const ci = instructions.findIndex((l) => /^RUN npm ci\b/.test(l));
    const manifest = instructions.findIndex((l) =>
      /^COPY packages\/cloud-tasks-emulator\/package\.json \.\/packages\/cloud-tasks-emulator\/$/.test(l),
    );
    assert.ok(manifest !== -1 && manifest < ci, 'npm ci sees the workspace it must link');
    assert.ok(instructions.indexOf('COPY packages ./packages') > ci);
  });

  test('the build context holds no local state, secrets or installed dependencies', () => {
    const ignore = read('.dockerignore')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    // Everything is excluded, then only what the image needs is let back in.
    assert.equal(ignore[0], '*');
    assert.deepEqual(
      ignore
        .slice(1)
        .map((l) => l.replace(/^!/, '').replace(/\/$/, ''))
        .sort(),
      [
        'bin',
        'migrations',
        'package-lock.json',
        'package.json',
        'packages/cloud-tasks-emulator/*.js',
        'packages/cloud-tasks-emulator/bin',
        'packages/cloud-tasks-emulator/package.json',
        'packages/cloud-tasks-emulator/src',
        'schema.sql',
        'src',
      ],
    );
  });
});
