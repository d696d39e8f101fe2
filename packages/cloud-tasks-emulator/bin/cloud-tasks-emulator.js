#!/usr/bin/env node
// `cloud-tasks-emulator [options]`: the emulator on its own, until SIGINT or SIGTERM (`--help` lists
// the options). Runs the TypeScript source in its repository and the built JavaScript when installed.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  // Its dependencies (commander, the Google clients it reads protos from) declare Node 22.12 or later.
  process.stderr.write(
    `cloud-tasks-emulator: warning: Node.js ${process.version} is older than the 22.12 its dependencies require; it may fail\n`,
  );
}
const { main } = await import('../cli.js');
const code = await main(process.argv.slice(2));
if (code !== undefined) process.exitCode = code;
