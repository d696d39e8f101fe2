// .env.example is the one list a newcomer reads to see what can be set: it must name every variable
// the configuration schema reads, and nothing the schema no longer reads.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { envSchema } from '../../src/config.ts';

const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');

/** `NAME=value` lines, commented out (`# NAME=`) or not. */
function variablesIn(text: string): string[] {
  return [...text.matchAll(/^#?[ \t]*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
}

test('.env.example names every variable the configuration schema reads, and no other', () => {
  const schema = Object.keys(envSchema.shape).sort();
  const listed = variablesIn(example);
  assert.ok(schema.length > 40, `the schema's keys were read (${schema.length})`);
  assert.deepEqual(
    schema.filter((name) => !listed.includes(name)),
    [],
    'add these to .env.example, with their defaults',
  );
  assert.deepEqual(
    listed.filter((name) => !schema.includes(name)),
    [],
    'src/config.ts no longer reads these',
  );
  assert.deepEqual(
    listed.filter((name, i) => listed.indexOf(name) !== i),
    [],
    'listed twice',
  );
});

test('every line of .env.example is commented out: npm start needs none of them', () => {
  const active = example.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
  assert.deepEqual(active, []);
});
