// The `./cli` entry (the command line's options, parsing and banner; see src/cli.ts). Where src/ is
// present (this repository) the TypeScript source runs as it is; an installed copy ships no src/
// and runs the JavaScript that `npm pack` built into dist/ (Node strips no types under
// node_modules). test/entries.test.ts keeps these names equal to the module's exports.
import { existsSync } from 'node:fs';

const source = new URL('./src/cli.ts', import.meta.url);
const module = await import(existsSync(source) ? source.href : './dist/cli.js');

export const { addEmulatorOptions, emulatorOptions, main, packageVersion, parseDuration, serveEmulator } = module;
