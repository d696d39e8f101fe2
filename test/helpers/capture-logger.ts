// A real logger whose JSON lines a test can read back.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logger.ts';

export interface CapturedLogs {
  logger: Logger;
  lines: Record<string, unknown>[];
  /** Lines whose message matches. */
  find(message: string | RegExp): Record<string, unknown>[];
}

export function captureLogger(level = 'debug'): CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const logger = createLogger({ level, format: 'json', destination });
  return {
    logger,
    lines,
    find: (m) => lines.filter((l) => (typeof m === 'string' ? l.message === m : m.test(String(l.message)))),
  };
}
