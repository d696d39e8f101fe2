// Lets CLI commands run inside a running `backend serve` when it holds the embedded database: the
// service listens on a loopback port with a random token, both written to $DATA_DIR/control.json
// (mode 600); the CLI posts its arguments there and prints what comes back. Only a PGlite data
// directory needs this: PostgreSQL is opened by every process, and in-memory PGlite by none other.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { makePrivateDir } from '../local-secrets.ts';
import type { Service } from '../main.ts';
import { serviceContext } from './command-context.ts';

interface ControlFile {
  pid: number;
  url: string;
  token: string;
}

type RunInService = (argv: string[], context: ReturnType<typeof serviceContext>) => Promise<number>;

/** Whether `serve` opens the channel: only when it holds an embedded database on disk. */
export function controlChannelWanted(config: Config): boolean {
  return config.database.kind === 'pglite' && config.database.dataDir !== null;
}

export async function startControlChannel(service: Service, run: RunInService): Promise<{ close(): Promise<void> }> {
  const token = randomBytes(32).toString('base64url');
  const expected = Buffer.from(token);
  const server = createServer(async (req, res) => {
    const given = Buffer.from(String(req.headers['x-control-token'] ?? ''));
    if (req.method !== 'POST' || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.writeHead(403).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let output = '';
    try {
      const { argv } = JSON.parse(Buffer.concat(chunks).toString()) as { argv: string[] };
      const code = await run(
        argv,
        serviceContext(service, (text) => {
          output += `${text}\n`;
        }),
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code, output }));
    } catch (err) {
      res
        .writeHead(500, { 'content-type': 'application/json' })
        .end(JSON.stringify({ code: 1, output, error: String(err) }));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  makePrivateDir(service.config.dataDir);
  const file = join(service.config.dataDir, 'control.json');
  const content: ControlFile = { pid: process.pid, url: `http://127.0.0.1:${port}`, token };
  writeFileSync(file, JSON.stringify(content), { mode: 0o600 });
  return {
    async close() {
      rmSync(file, { force: true });
      server.close();
    },
  };
}

/** Runs argv in the service that holds dataDir; undefined when there is none to ask. */
export async function runInService(
  dataDir: string,
  argv: string[],
): Promise<{ code: number; output: string } | undefined> {
  let control: ControlFile;
  try {
    control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as ControlFile;
  } catch {
    return undefined;
  }
  const response = await fetch(control.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-control-token': control.token },
    body: JSON.stringify({ argv }),
  }).catch(() => undefined);
  if (!response?.ok) return undefined;
  return (await response.json()) as { code: number; output: string };
}
