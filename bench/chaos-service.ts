// `backend` as the chaos run starts it: the real CLI (`node bench/chaos-service.ts serve` is
// `backend serve`), except that src/task-registry.ts resolves to bench/chaos-registry.ts, which adds
// the test-only chaos tasks and injected transient failures. Production code has no switch for
// this: the substitution is a module resolution hook of this process only. Refused in cloud mode.
import module from 'node:module';

if (process.env.TASKS_BACKEND === 'cloud') {
  process.stderr.write('chaos-service: test-only, refused with TASKS_BACKEND=cloud\n');
  process.exit(2);
}

const production = new URL('../src/task-registry.ts', import.meta.url).href;
const chaos = new URL('./chaos-registry.ts', import.meta.url).href;

module.registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    // The chaos registry itself imports the production one: that import is left alone.
    if (resolved.url === production && context.parentURL !== chaos) return { ...resolved, url: chaos };
    return resolved;
  },
});

// A computed specifier: bin/backend.js is plain JavaScript without declarations.
const bin = new URL('../bin/backend.js', import.meta.url).href;
await import(bin);
