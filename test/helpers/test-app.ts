// Builds the real app (buildApp) over a fresh test database, for app.inject() tests.
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { TestClock } from '../../src/clock.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import { type CapturedLogs, captureLogger } from './capture-logger.ts';
import { createTestDb, type TestDb } from './test-db.ts';

export interface TestApp {
  app: FastifyInstance;
  db: TestDb;
  config: Config;
  clock: TestClock;
  logs: CapturedLogs;
  close(): Promise<void>;
}

export async function buildTestApp(options: { env?: Record<string, string>; db?: TestDb } = {}): Promise<TestApp> {
  const config = loadConfig({ DATABASE_URL: 'memory://', ...options.env });
  const db = options.db ?? (await createTestDb());
  const logs = captureLogger();
  const clock = new TestClock();
  const app = await buildApp({ config, db, logger: logs.logger, clock });
  return {
    app,
    db,
    config,
    clock,
    logs,
    async close() {
      await app.close();
      await db.close();
    },
  };
}
