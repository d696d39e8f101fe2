// The official Cloud Tasks and Cloud Scheduler clients, for Google Cloud or for an emulator: the same
// code either way, only the endpoint and credentials differ (reference/cloud-tasks.md §5.3).
import { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient, v2beta3 } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import type { ClientOptions } from 'google-gax';
// The insecure channel credentials must come from the grpc-js instance gax itself uses.
import * as gax from 'google-gax';

export interface CloudClients {
  tasks: CloudTasksClient;
  scheduler: CloudSchedulerClient;
  /** The v2beta3 client, for what only v2beta3 reports (queue stats: tasks waiting); same endpoint. */
  tasksBeta: v2beta3.CloudTasksClient;
  close(): Promise<void>;
}

/**
 * The clients' documented endpoint options, for Google Cloud mode only. Unset in production (the
 * clients' own defaults: cloudtasks/cloudscheduler.googleapis.com over TLS, Application Default
 * Credentials); tests set them to put a local server where Google's API would be.
 */
export type GoogleEndpoint = Pick<ClientOptions, 'apiEndpoint' | 'port' | 'sslCreds' | 'authClient'>;

export interface CloudClientsOptions {
  /** "host:port" of an emulator's gRPC server; undefined: Google Cloud. */
  emulator: string | undefined;
  projectId: string;
  google?: GoogleEndpoint;
}

export function createCloudClients(options: CloudClientsOptions): CloudClients {
  let tasks: CloudTasksClient;
  let scheduler: CloudSchedulerClient;
  let tasksBeta: v2beta3.CloudTasksClient;
  if (options.emulator) {
    const at = options.emulator.lastIndexOf(':');
    const common = {
      apiEndpoint: options.emulator.slice(0, at).replace(/^\[|\]$/g, ''),
      port: Number(options.emulator.slice(at + 1)),
      sslCreds: gax.grpc.credentials.createInsecure(),
      // No metadata-server probe and no token: the emulator asks for none.
      authClient: new PassThroughClient(),
      projectId: options.projectId,
    };
    tasks = new CloudTasksClient(common);
    scheduler = new CloudSchedulerClient(common);
    tasksBeta = new v2beta3.CloudTasksClient(common);
  } else {
    tasks = new CloudTasksClient({ ...options.google, projectId: options.projectId });
    scheduler = new CloudSchedulerClient({ ...options.google, projectId: options.projectId });
    tasksBeta = new v2beta3.CloudTasksClient({ ...options.google, projectId: options.projectId });
  }
  return {
    tasks,
    scheduler,
    tasksBeta,
    async close() {
      await Promise.all([tasks.close(), scheduler.close(), tasksBeta.close()]);
    },
  };
}
