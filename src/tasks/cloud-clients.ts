// The official Cloud Tasks and Cloud Scheduler clients, for Google Cloud or for an emulator: the same
// code either way, only the endpoint and credentials differ.
import { createRequire } from 'node:module';
import type { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient, type v2beta3 } from '@google-cloud/tasks';
import { AuthClient, GoogleAuth, PassThroughClient } from 'google-auth-library';
import type { ClientOptions } from 'google-gax';
// The insecure channel credentials must come from the grpc-js instance gax itself uses.
import * as gax from 'google-gax';

// Loaded on first use: see createCloudClients.
const require = createRequire(import.meta.url);

export interface CloudClients {
  readonly tasks: CloudTasksClient;
  /** Made on first use (the service in Google Cloud needs it only for the dashboard's schedules page). */
  readonly scheduler: CloudSchedulerClient;
  /** The v2beta3 client, for what only v2beta3 reports (queue stats: tasks waiting); same endpoint. Made on first use. */
  readonly tasksBeta: v2beta3.CloudTasksClient;
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
  let common: ClientOptions;
  if (options.emulator) {
    const at = options.emulator.lastIndexOf(':');
    common = {
      apiEndpoint: options.emulator.slice(0, at).replace(/^\[|\]$/g, ''),
      port: Number(options.emulator.slice(at + 1)),
      sslCreds: gax.grpc.credentials.createInsecure(),
      // No metadata-server probe and no token: the emulator asks for none.
      authClient: new PassThroughClient(),
      projectId: options.projectId,
    };
  } else {
    common = { authClient: new LazyApplicationDefault(), ...options.google, projectId: options.projectId };
  }
  const tasks = new CloudTasksClient(common);
  // The Scheduler package and the v2beta3 client each load their own protocol descriptions, a
  // large share of a cold start's CPU; a Cloud Run instance serving tasks never calls them, so
  // they are made when first asked for (a synchronous require: the getter stays a plain property).
  let scheduler: CloudSchedulerClient | undefined;
  let tasksBeta: v2beta3.CloudTasksClient | undefined;
  return {
    tasks,
    get scheduler() {
      if (!scheduler) {
        const { CloudSchedulerClient } = require('@google-cloud/scheduler') as typeof import('@google-cloud/scheduler');
        scheduler = new CloudSchedulerClient(common);
      }
      return scheduler;
    },
    get tasksBeta() {
      if (!tasksBeta) {
        const { v2beta3 } = require('@google-cloud/tasks') as typeof import('@google-cloud/tasks');
        tasksBeta = new v2beta3.CloudTasksClient(common);
      }
      return tasksBeta;
    },
    async close() {
      await Promise.all([tasks.close(), scheduler?.close(), tasksBeta?.close()]);
    },
  };
}

/**
 * Application Default Credentials looked up per call. Given none, the clients resolve credentials
 * once, on their first call, and a failure there (no credentials yet, the metadata server not
 * answering) becomes an unhandled rejection inside the generated client that ends the process;
 * here it fails that one call, and a later call looks again.
 */
class LazyApplicationDefault extends AuthClient {
  readonly #auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
  async getRequestHeaders(url?: string | URL) {
    return (await this.#auth.getClient()).getRequestHeaders(url);
  }
  async getAccessToken() {
    return (await this.#auth.getClient()).getAccessToken();
  }
  async request<T>(options: Parameters<AuthClient['request']>[0]) {
    return (await this.#auth.getClient()).request<T>(options);
  }
}
