// Libraries that only some requests or tasks use (the HTML parser, the Markdown renderer, the
// LLM and Stripe SDKs, the scraper's HTTP client…) are loaded on first use, not at start: a cold
// start, which Cloud Run's first request waits for, then pays only for what serving needs.
// `lazyRequire` keeps a synchronous caller synchronous (Node 24 loads an ES module this way too);
// an async caller uses `lazyImport`, which keeps the module's ES build, and so the same instances
// of its own dependencies (zod, say) as the rest of the service.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function lazyRequire<T>(specifier: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= require(specifier) as T;
    return loaded;
  };
}

export function lazyImport<T>(load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () => {
    loading ??= load();
    return loading;
  };
}
