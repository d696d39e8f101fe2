// Import rules that keep the architecture of ARCHITECTURE.md true (run: npm run check:cycles).
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
      name: 'emulator-stands-alone',
      severity: 'error',
      comment: 'src/emulator could be published alone: it imports nothing else from src/.',
      from: { path: '^src/emulator/' },
      to: { path: '^src/', pathNot: '^src/emulator/' },
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
      name: 'nothing-imports-the-entry-points',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/(main\\.ts|cli/)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
