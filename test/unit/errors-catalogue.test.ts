import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CATALOGUE } from '../../src/errors.ts';

test('docs/errors.md lists exactly the codes of src/errors.ts, with the same status', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1] ?? '', Number(m[2])] as const);
  const documented = new Map(rows);
  assert.equal(documented.size, rows.length, 'a code is documented twice');
  for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
    assert.equal(documented.get(code), status, `${code} (${status}) is missing or has another status in the doc`);
  }
  for (const code of documented.keys()) {
    assert.ok(code in ERROR_CATALOGUE, `${code} is documented but not in src/errors.ts`);
  }
});

test('every catalogued code has a client or server error status', () => {
  for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
    assert.ok(status >= 400 && status < 600, code);
  }
});
