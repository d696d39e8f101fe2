// The package's main entry (startEmulator and its types; see src/index.ts).
// Where src/ is present (this repository) the TypeScript source runs as it is; an installed copy
// ships no src/ and runs the JavaScript that `npm pack` built into dist/ (Node strips no types under
// node_modules). test/entries.test.ts keeps these names equal to the module's exports.
import { existsSync } from 'node:fs';

const source = new URL('./src/index.ts', import.meta.url);
const module = await import(existsSync(source) ? source.href : './dist/index.js');

export const {
  backoffDelayMs,
  CLOUD_QUEUE_TOMBSTONE_MS,
  DEFAULT_GRPC_PORT,
  DEFAULT_HTTP_PORT,
  EmulatorEmitter,
  startEmulator,
} = module;
