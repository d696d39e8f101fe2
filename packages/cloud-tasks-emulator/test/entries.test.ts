// The package's entries (index.js, cli.js, grpc.js) choose between the TypeScript source and the
// built dist/ and re-export by name: each must export exactly what its module does, and each
// `exports` entry of package.json must name a shim that is packed, its source and its declarations.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

interface Conditions {
  '@backend/source': string;
  types: string;
  default: string;
}
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, Conditions | string>;
  files: string[];
};

const ENTRIES = ['.', './cli', './grpc'];

describe('package entries', () => {
  test('package.json exports the three entries, each with its source, declarations and a packed shim', () => {
    assert.deepEqual(Object.keys(manifest.exports).sort(), [...ENTRIES, './package.json'].sort());
    for (const entry of ENTRIES) {
      const name = entry === '.' ? 'index' : entry.slice(2);
      assert.deepEqual(manifest.exports[entry], {
        '@backend/source': `./src/${name}.ts`,
        types: `./dist/${name}.d.ts`,
        default: `./${name}.js`,
      });
      assert.ok(manifest.files.includes(`${name}.js`), `${name}.js is packed`);
    }
    assert.ok(manifest.files.includes('dist'));
  });

  for (const name of ['index', 'cli', 'grpc']) {
    test(`${name}.js re-exports every export of src/${name}.ts, and nothing else`, async () => {
      const shim = (await import(`../${name}.js`)) as Record<string, unknown>;
      const source = (await import(`../src/${name}.ts`)) as Record<string, unknown>;
      assert.deepEqual(Object.keys(shim).sort(), Object.keys(source).sort());
      for (const key of Object.keys(source)) assert.equal(shim[key], source[key], `${name}.js: ${key} is the source's`);
    });
  }
});
