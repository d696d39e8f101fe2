// The official Cloud Tasks and Cloud Scheduler clients, for Google Cloud or for an emulator: the same
// code either way, only the endpoint and credentials differ (reference/cloud-tasks.md §5.3).
import { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
// The insecure channel credentials must come from the grpc-js instance gax itself uses.
import * as gax from 'google-gax';

export interface CloudClients {
  tasks: CloudTasksClient;
  scheduler: CloudSchedulerClient;
  close(): Promise<void>;
}

/** emulator: "host:port" of its gRPC server; undefined: Google Cloud with Application Default Credentials. */
export function createCloudClients(options: { emulator: string | undefined; projectId: string }): CloudClients {
  let tasks: CloudTasksClient;
  let scheduler: CloudSchedulerClient;
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
  } else {
    tasks = new CloudTasksClient({ projectId: options.projectId });
    scheduler = new CloudSchedulerClient({ projectId: options.projectId });
  }
  return {
    tasks,
    scheduler,
    async close() {
      await Promise.all([tasks.close(), scheduler.close()]);
    },
  };
}
