// The one check every command makes before it talks to the task backend (enqueue, runs replay,
// queues sync, schedules sync): a plain TCP connection to the emulator's gRPC port (or to Google's
// endpoint), given CHECK_TIMEOUT_MS. Without it the gRPC clients retry an absent server for about
// 20 seconds and then print a page of errors; with it the command ends at once with one line.
import { connect } from 'node:net';
import { CliError } from './cli-errors.ts';

/** How long the connection may take before the backend counts as unreachable. */
export const CHECK_TIMEOUT_MS = 2_000;

/** The variables through which gRPC's client is sent via a proxy. */
const PROXY_VARIABLES = ['grpc_proxy', 'https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'];

/** Where the official clients go when no emulator is configured. */
export const GOOGLE_CLOUD_TASKS_ADDRESS = 'cloudtasks.googleapis.com:443';

/**
 * Resolves once something accepts a connection at the task backend's address; otherwise throws a
 * CliError naming the address and what to do. `emulator` is "host:port", undefined for Google Cloud.
 */
export async function checkTaskBackend(emulator: string | undefined, timeoutMs = CHECK_TIMEOUT_MS): Promise<void> {
  // Behind a proxy the clients reach Google through it, where a direct connection may well fail.
  if (!emulator && PROXY_VARIABLES.some((name) => process.env[name])) return;
  const address = emulator ?? GOOGLE_CLOUD_TASKS_ADDRESS;
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = connect({ host, port });
    const done = (why: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    socket.once('connect', () => done(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
  if (problem === undefined) return;
  throw new CliError(
    emulator
      ? `cannot reach the task backend at ${address}: is \`npm start\` (or \`npx backend emulator\`) running?`
      : `cannot reach Google Cloud Tasks at ${address} (${problem}): check this machine's network access`,
  );
}
