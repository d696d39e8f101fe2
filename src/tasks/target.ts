// Where tasks go, read from the config: the enqueuer's target and the task backend's address. The
// service (main.ts) and the command line (cli/) both use it; it loads nothing but types, so a CLI
// command that needs it does not load the service.
import type { Config } from '../config.ts';
import type { EnqueueTarget } from './enqueue.ts';

export function enqueueTarget(config: Config): EnqueueTarget {
  return {
    projectId: config.tasks.projectId,
    location: config.tasks.location,
    publicBaseUrl: config.tasks.pushBaseUrl,
    invokerServiceAccount: config.tasks.invokerServiceAccount,
    audience: config.tasks.oidcAudience,
    auth: config.tasks.auth,
    secret: config.tasks.secret,
  };
}

/** Where the task backend is ("host:port" of an emulator), or undefined for Google Cloud Tasks. */
export function emulatorAddress(config: Config): string | undefined {
  if (config.tasks.backend === 'cloud') return undefined;
  return config.tasks.emulatorHost ?? `127.0.0.1:${config.tasks.emulatorGrpcPort}`;
}
