#!/usr/bin/env node
// The `backend` command. The code is TypeScript run by Node 24's type stripping; where the
// machine's Node is older, re-run this file with the Node 24 that npm installed with the project.
// BACKEND_CLI_TIMING=1 prints, on standard error, how long the command took of its own (from this
// line to its exit, as wall time and as CPU time) and since the process started (Node's own start
// included): docs/cli.md.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

const started = performance.now();
const startedCpu = process.cpuUsage();
const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
  // V8's code cache on disk (in the OS temp dir): later starts skip compiling the dependencies.
  module.enableCompileCache?.();
  const { runCli } = await import('../src/cli/main.ts');
  const code = await runCli(process.argv.slice(2));
  if (process.env.BACKEND_CLI_TIMING) {
    const now = performance.now();
    const cpu = process.cpuUsage(startedCpu);
    const timing = {
      ownMs: Math.round(now - started),
      ownCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      sinceProcessStartMs: Math.round(now),
    };
    process.stderr.write(`backend timing: ${JSON.stringify(timing)}\n`);
  }
  if (code !== 0) process.exit(code);
} else {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`backend: needs Node.js 24 (this is ${process.version}); run \`npm install\` first\n`);
    process.exit(1);
  }
  const child = spawn(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
