// The OpenTelemetry API, loaded as CommonJS: the Google clients (google-gax) require its CommonJS
// build, and an `import` would load the ES module build beside it, a second copy of the same code
// for start-up to pay for (the two would share their global state, so only time is lost).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const otel = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
