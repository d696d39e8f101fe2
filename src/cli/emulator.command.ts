// `backend emulator`: the Cloud Tasks + Cloud Scheduler emulator on its own, for services written
// in any language. The options, the banner and the signal handling are the emulator package's own
// command line (@backend/cloud-tasks-emulator/cli, the same as its `cloud-tasks-emulator` binary);
// this command only hangs them under the service's CLI.
import { addEmulatorOptions, type EmulatorCliOptions, serveEmulator } from '@backend/cloud-tasks-emulator/cli';
import type { Command } from 'commander';

export function emulatorCommand(program: Command): void {
  addEmulatorOptions(
    program
      .command('emulator')
      .description('run the Cloud Tasks v2 + Cloud Scheduler v1 emulator (gRPC and REST) until stopped'),
  ).action(async (options: EmulatorCliOptions) => {
    await serveEmulator(options);
  });
}
