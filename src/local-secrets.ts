// Secrets that local mode generates once and keeps in $DATA_DIR, so `npm start` needs no setup.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, withOverrides } from './config.ts';

/**
 * In emulator mode, fills SESSION_SECRET from $DATA_DIR/session-secret and WHATSAPP_APP_SECRET
 * from $DATA_DIR/whatsapp-app-secret (so local webhooks are signed and checked as in production).
 * Cloud mode requires the first and disables the WhatsApp webhook without the second.
 */
export function withLocalSecrets(config: Config): Config {
  if (config.tasks.backend === 'cloud') return config;
  return withOverrides(config, {
    sessionSecret: config.sessionSecret ?? readOrCreate(join(config.dataDir, 'session-secret')),
    whatsapp: {
      ...config.whatsapp,
      appSecret: config.whatsapp.appSecret ?? readOrCreate(join(config.dataDir, 'whatsapp-app-secret')),
    },
  });
}

function readOrCreate(file: string): string {
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return existing;
  } catch {
    // not there yet
  }
  mkdirSync(join(file, '..'), { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
