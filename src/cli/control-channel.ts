// Lets CLI commands run inside a running `backend serve`: the service listens on a loopback port
// with a random token, both written to $DATA_DIR/control.json (mode 600) together with where the
// service is (its HTTP address, its emulator's ports, its database); the CLI posts its arguments
// there and prints what comes back. So a command in another terminal works on the service's own
// database and task backend whatever variables that terminal has: an embedded PGlite directory
// (which only one process may open), PostgreSQL given to `npm start` only, or an emulator started
// on other ports. Written in local mode (an embedded database on disk, or an emulator as the task
// backend); never in Google Cloud, where each command is its own job with its own variables.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { describeDatabase } from '../db/open-database.ts';
import { makePrivateDir } from '../local-secrets.ts';
import type { Service } from '../main.ts';
import { type CommandContext, serviceContext } from './command-context.ts';
import { CONTROL_FILE, type ControlFile, type ServiceResult } from './control-client.ts';

type RunInService = (argv: string[], context: CommandContext, err: (text: string) => void) => Promise<number>;

/** Whether `serve` opens the channel: in local mode (an embedded database on disk, or an emulator). */
export function controlChannelWanted(config: Config): boolean {
  return (config.database.kind === 'pglite' && config.database.dataDir !== null) || config.tasks.backend === 'emulator';
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
    let errors = '';
    try {
      const { argv } = JSON.parse(Buffer.concat(chunks).toString()) as { argv: string[] };
      const code = await run(
        argv,
        serviceContext(service, (text) => {
          output += `${text}\n`;
        }),
        (text) => {
          errors += `${text}\n`;
        },
      );
      const result: ServiceResult = { code, output, errors };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
    } catch (err) {
      res
        .writeHead(500, { 'content-type': 'application/json' })
        .end(JSON.stringify({ code: 1, output, errors: `${errors}backend: ${String(err)}\n` }));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  makePrivateDir(service.config.dataDir);
  const file = join(service.config.dataDir, CONTROL_FILE);
  const content: ControlFile = {
    pid: process.pid,
    url: `http://127.0.0.1:${port}`,
    token,
    service: {
      http: service.url,
      database: describeDatabase(service.config.database),
      emulator: service.emulator ? { grpc: service.emulator.grpcAddress, http: service.emulator.httpUrl } : null,
    },
  };
  writeFileSync(file, JSON.stringify(content), { mode: 0o600 });
  return {
    async close() {
      rmSync(file, { force: true });
      server.close();
    },
  };
}
