// Import rules that keep the architecture of ARCHITECTURE.md true (run: npm run check:cycles).
const { readdirSync } = require('node:fs');
const { join } = require('node:path');

// Every folder of src/domains is a domain, so a new one is covered without editing this file.
const domains = readdirSync(join(__dirname, 'src/domains'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Circular imports hide the layering.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'the-emulator-package-stands-alone',
      severity: 'error',
      comment:
        'packages/cloud-tasks-emulator is a product of its own: nothing in it (sources, tests, conformance suite) imports the service.',
      from: { path: '^packages/cloud-tasks-emulator/' },
      to: { path: '^(src|test|bench|scripts|bin)/' },
    },
    {
      name: 'the-service-uses-the-emulator-by-its-name',
      severity: 'error',
      comment:
        'src/ imports @backend/cloud-tasks-emulator (its index) or its /cli entry, by package name: never a file inside it, never a relative path.',
      from: { path: '^src/' },
      to: { path: '^packages/', pathNot: '^packages/cloud-tasks-emulator/(index|cli)\\.js$' },
    },
    {
      name: 'no-relative-imports-into-packages',
      severity: 'error',
      comment: 'A workspace package is reached through node_modules, by its name, as an installed copy would be.',
      from: { path: '^src/' },
      to: { path: '^packages/', dependencyTypesNot: ['aliased-workspace'] },
    },
    {
      name: 'tasks-are-generic',
      severity: 'error',
      comment: 'The task system knows no domain.',
      from: { path: '^src/tasks/' },
      to: { path: '^src/(domains|http|admin|cli)/' },
    },
    {
      name: 'domains-do-not-know-http',
      severity: 'error',
      from: { path: '^src/domains/' },
      to: { path: '^src/(http|admin|cli)/|^src/(app|main)\\.ts$' },
    },
    {
      name: 'only-the-composition-root-picks-adapters',
      severity: 'error',
      comment: 'Adapters are chosen in main.ts and cli/ only; everything else takes ports.',
      from: { path: '^src/', pathNot: '^src/(main\\.ts|cli/|db/)' },
      to: { path: '^src/db/(pglite|postgres|open-database)\\.ts$' },
    },
    {
      name: 'the-cli-loads-the-service-only-to-serve',
      severity: 'error',
      comment:
        'Commands take their wiring from small modules (tasks/target.ts, cli/command-context.ts); only `serve` starts the service.',
      from: { path: '^src/cli/', pathNot: '^src/cli/serve\\.command\\.ts$' },
      to: { path: '^src/main\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'nothing-imports-the-entry-points',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/(main\\.ts|cli/)' },
    },
    // A domain's public surface is its index.ts: code outside src/domains/<d> imports that file and
    // nothing else of the domain (files inside a domain import each other freely). A domain may also
    // have a reads.ts, a slice of index.ts holding only its read queries, so that the command line's
    // read-only commands stay fast (index.ts loads schemas, clients and tracing). The one exception
    // is src/task-registry.ts, the list of tasks, which also reads the task definitions (*.task.ts);
    // keeping them out of index.ts keeps the domains' mutual imports acyclic. Only src/ is checked:
    // tests may import a domain's internals.
    ...domains.map((domain) => ({
      name: `domain-surface-${domain}`,
      severity: 'error',
      comment: `Outside src/domains/${domain}, import its index.ts (or its reads.ts) only.`,
      from: { path: '^src/', pathNot: `^src/(domains/${domain}/|task-registry\\.ts$)` },
      to: { path: `^src/domains/${domain}/`, pathNot: `^src/domains/${domain}/(index|reads)\\.ts$` },
    })),
    {
      name: 'the-registry-reads-surfaces-and-tasks',
      severity: 'error',
      comment: 'src/task-registry.ts imports a domain through its index.ts or its *.task.ts files.',
      from: { path: '^src/task-registry\\.ts$' },
      to: { path: '^src/domains/[^/]+/', pathNot: '^src/domains/[^/]+/(index|reads|[\\w-]+\\.task)\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
