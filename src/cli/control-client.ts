// The CLI's side of the control channel (control-channel.ts is the service's): finds a live
// `backend serve` through $DATA_DIR/control.json and runs a command line inside it. Kept apart and
// on node:http so that a command handed to the service loads next to nothing before it is sent.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

export const CONTROL_FILE = 'control.json';

/** $DATA_DIR/control.json, written by `backend serve` in local mode (mode 600). */
export interface ControlFile {
  pid: number;
  /** The control channel: POST {"argv": [...]} with the token in x-control-token. */
  url: string;
  token: string;
  /** Where the service is, for people and tools (docs/cli.md, "Finding the running service"). */
  service?: {
    http: string;
    database: string;
    emulator: { grpc: string; http: string } | null;
  };
}

export interface ServiceResult {
  code: number;
  /** What the command printed to standard output. */
  output: string;
  /** What it printed to standard error (its error line). */
  errors?: string;
}

/** The control file of a live service owning dataDir; undefined if none, or its process has gone. */
export function runningService(dataDir: string): ControlFile | undefined {
  let control: ControlFile;
  try {
    control = JSON.parse(readFileSync(join(dataDir, CONTROL_FILE), 'utf8')) as ControlFile;
  } catch {
    return undefined;
  }
  try {
    process.kill(control.pid, 0);
  } catch (err) {
    // EPERM: the process exists but belongs to someone else; anything else: it is gone (a crash left the file).
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return control;
}

/** Runs argv in that service; undefined when it does not answer (then the command runs here). */
export function runInService(control: ControlFile, argv: string[]): Promise<ServiceResult | undefined> {
  const body = JSON.stringify({ argv });
  return new Promise((resolve) => {
    const req = request(
      control.url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-control-token': control.token,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => resolve(undefined));
        res.on('end', () => {
          // 403: the file is an earlier service's, whose port another process has taken.
          if (res.statusCode !== 200 && res.statusCode !== 500) return resolve(undefined);
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString()) as ServiceResult);
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}
