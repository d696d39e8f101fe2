// Runs the real `backend` binary as a child process, the way a person or a deploy script would.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/backend.js', import.meta.url));

/** Environment for a child: the test runner's, minus the service's own variables. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const key of ['PORT', 'DATABASE_URL', 'DATA_DIR', 'TASKS_BACKEND', 'LOG_LEVEL', 'LOG_FORMAT']) delete base[key];
  return { ...base, LOG_FORMAT: 'json', ...env };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export async function runBackend(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

export interface RunningBackend {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first stdout line matching, rejects if the process exits first. */
  waitForLine(pattern: RegExp): Promise<string>;
  exit: Promise<number | null>;
}

export function startBackend(args: string[], env: Record<string, string> = {}): RunningBackend {
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters: Array<{ pattern: RegExp; resolve: (l: string) => void }> = [];
  const onData = (d: Buffer) => {
    out += d;
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.pattern.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    output: () => out,
    exit,
    waitForLine: (pattern) =>
      new Promise<string>((resolve, reject) => {
        const line = out.split('\n').find((l) => pattern.test(l));
        if (line !== undefined) return resolve(line);
        waiters.push({ pattern, resolve });
        exit.then((code) => reject(new Error(`exited with ${code} before printing ${pattern}:\n${out}`)));
      }),
  };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Free ports for a service and its embedded emulator, so tests never collide with each other. */
export async function servicePorts(): Promise<Record<string, string>> {
  const [port, grpc, http] = [await freePort(), await freePort(), await freePort()];
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    EMULATOR_GRPC_PORT: String(grpc),
    EMULATOR_HTTP_PORT: String(http),
  };
}
