// Local state in $DATA_DIR: the secrets that local mode generates once (so `npm start` needs no
// setup), and the rule that the directory is private (0700) and never written in cloud mode.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, withOverrides } from './config.ts';

/**
 * In emulator mode, fills SESSION_SECRET from $DATA_DIR/session-secret and WHATSAPP_APP_SECRET
 * from $DATA_DIR/whatsapp-app-secret (so local webhooks are signed and checked as in production),
 * creating $DATA_DIR with mode 0700 when something is kept there. Cloud mode writes nothing there:
 * it requires the first and disables the WhatsApp webhook without the second.
 */
export function withLocalSecrets(config: Config): Config {
  if (config.tasks.backend === 'cloud') return config;
  // The embedded emulator keeps its state in $DATA_DIR/emulator: the directory is ours to create.
  if (!config.tasks.emulatorHost) makePrivateDir(config.dataDir);
  return withOverrides(config, {
    sessionSecret: config.sessionSecret ?? readOrCreate(config.dataDir, 'session-secret'),
    whatsapp: {
      ...config.whatsapp,
      appSecret: config.whatsapp.appSecret ?? readOrCreate(config.dataDir, 'whatsapp-app-secret'),
    },
  });
}

/**
 * Creates a directory for local state with mode 0700 (parents it creates too), so that secrets,
 * the emulator's state and the embedded database are readable by this user only. An existing
 * directory keeps its mode: $DATA_DIR may be a directory the operator manages.
 */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

function readOrCreate(dataDir: string, name: string): string {
  const file = join(dataDir, name);
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return existing;
  } catch {
    // not there yet
  }
  makePrivateDir(dataDir);
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
