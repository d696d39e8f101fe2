// The `./grpc` entry (the gRPC transport alone; see src/grpc.ts).
// Where src/ is present (this repository) the TypeScript source runs as it is; an installed copy
// ships no src/ and runs the JavaScript that `npm pack` built into dist/ (Node strips no types under
// node_modules). test/entries.test.ts keeps these names equal to the module's exports.
import { existsSync } from 'node:fs';

const source = new URL('./src/grpc.ts', import.meta.url);
const module = await import(existsSync(source) ? source.href : './dist/grpc.js');

export const {
  ApiError,
  alreadyExists,
  Code,
  failedPrecondition,
  invalidArgument,
  loadServices,
  notFound,
  startGrpcServer,
} = module;
