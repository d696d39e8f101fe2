import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

const issuesOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.issues];
  }
  assert.fail('expected a ConfigError');
};

describe('config', () => {
  test('no variables at all: the local defaults', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.publicBaseUrl, 'http://localhost:8080');
    assert.equal(c.dataDir, '.data');
    assert.deepEqual(c.database, { kind: 'pglite', dataDir: '.data/pglite' });
    assert.equal(c.tasks.backend, 'emulator');
    assert.equal(c.tasks.projectId, 'local');
    assert.equal(c.tasks.location, 'us-central1');
    assert.equal(c.tasks.invokerServiceAccount, 'tasks-invoker@local.iam.gserviceaccount.com');
    assert.equal(c.tasks.oidcAudience, 'http://localhost:8080');
    assert.equal(c.tasks.auth, 'oidc');
    assert.equal(c.whatsapp.apiBaseUrl, 'https://graph.facebook.com/v23.0');
    assert.equal(c.oauth.issuerUrl, 'https://accounts.google.com');
    assert.equal(c.scraperAllowPrivateNetworks, false);
    assert.deepEqual(c.adminEmails, []);
  });

  test('derived defaults follow the variables they derive from', () => {
    const c = loadConfig({ PORT: '9000', DATA_DIR: '/var/lib/x', PUBLIC_BASE_URL: 'https://api.example.com/' });
    assert.equal(c.publicBaseUrl, 'https://api.example.com');
    assert.equal(c.tasks.oidcAudience, 'https://api.example.com');
    assert.deepEqual(c.database, { kind: 'pglite', dataDir: '/var/lib/x/pglite' });
    assert.equal(loadConfig({ PORT: '9000' }).publicBaseUrl, 'http://localhost:9000');
  });

  test('DATABASE_URL selects the engine', () => {
    assert.deepEqual(loadConfig({ DATABASE_URL: 'memory://' }).database, { kind: 'pglite', dataDir: null });
    const url = 'postgres://u:p@/db?host=/cloudsql/p:r:i';
    assert.deepEqual(loadConfig({ DATABASE_URL: url }).database, { kind: 'postgres', url });
    assert.equal(loadConfig({ DATABASE_URL: 'postgresql://localhost/x' }).database.kind, 'postgres');
  });

  test('an empty variable counts as unset', () => {
    const c = loadConfig({ PORT: '', DATABASE_URL: '  ', TASK_SECRET: '' });
    assert.equal(c.port, 8080);
    assert.equal(c.database.kind, 'pglite');
  });

  test('the result is frozen all the way down', () => {
    const c = loadConfig({});
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.tasks) && Object.isFrozen(c.adminEmails));
    assert.throws(() => {
      (c as { port: number }).port = 1;
    }, TypeError);
  });

  const invalid: Array<[string, Record<string, string>, RegExp]> = [
    ['PORT', { PORT: 'abc' }, /^PORT="abc" is not valid: expected an integer from 1 to 65535$/],
    ['PORT', { PORT: '70000' }, /^PORT="70000" is not valid: expected an integer from 1 to 65535$/],
    ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'ftp://x' }, /^PUBLIC_BASE_URL="ftp:\/\/x" is not valid: expected an http/],
    ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'https://x.com/api' }, /^PUBLIC_BASE_URL=.*no path, query or fragment/],
    [
      'DATABASE_URL',
      { DATABASE_URL: 'mysql://x' },
      /^DATABASE_URL=\(value hidden\) is not valid: expected postgres:\/\//,
    ],
    ['TASKS_BACKEND', { TASKS_BACKEND: 'celery' }, /^TASKS_BACKEND="celery" is not valid: expected emulator or cloud$/],
    ['TASKS_AUTH', { TASKS_AUTH: 'none' }, /^TASKS_AUTH="none" is not valid: expected oidc, cloud-run-iam, secret/],
    ['TASK_SECRET', { TASK_SECRET: 'short' }, /^TASK_SECRET=\(value hidden\) is not valid: expected at least 32/],
    ['CLOUD_TASKS_EMULATOR_HOST', { CLOUD_TASKS_EMULATOR_HOST: 'localhost' }, /expected host:port/],
    ['TASKS_INVOKER_SERVICE_ACCOUNT', { TASKS_INVOKER_SERVICE_ACCOUNT: 'nobody' }, /expected an e-mail address/],
    ['ADMIN_EMAILS', { ADMIN_EMAILS: 'a@b.co, nope' }, /^ADMIN_EMAILS=.* expected a comma-separated list/],
    ['SCRAPER_ALLOW_PRIVATE_NETWORKS', { SCRAPER_ALLOW_PRIVATE_NETWORKS: 'yes' }, /expected true or false$/],
    ['STRIPE_WEBHOOK_SECRET', { STRIPE_WEBHOOK_SECRET: 'abc' }, /^STRIPE_WEBHOOK_SECRET=\(value hidden\).*whsec_/],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL="loud" is not valid/],
  ];
  for (const [variable, env, expected] of invalid) {
    test(`${variable}=${JSON.stringify(Object.values(env)[0])} is refused with a line naming it`, () => {
      const issues = issuesOf(env);
      assert.equal(issues.length, 1, issues.join('\n'));
      assert.match(issues[0]!, expected);
    });
  }

  test('several bad variables give one line each', () => {
    const issues = issuesOf({ PORT: 'x', TASKS_BACKEND: 'y' });
    assert.equal(issues.length, 2);
    assert.ok(issues.some((l) => l.startsWith('PORT=')) && issues.some((l) => l.startsWith('TASKS_BACKEND=')));
  });

  test('a secret never appears in an error', () => {
    const secret = 'not-long-enough-secret';
    const issues = issuesOf({ TASK_SECRET: secret, DATABASE_URL: 'mysql://user:hunter2@db' });
    assert.ok(!issues.join('\n').includes(secret) && !issues.join('\n').includes('hunter2'));
  });

  test('secret modes need TASK_SECRET', () => {
    assert.match(issuesOf({ TASKS_AUTH: 'secret' })[0]!, /^TASK_SECRET is required when TASKS_AUTH=secret/);
    assert.match(issuesOf({ TASKS_AUTH: 'oidc-or-secret' })[0]!, /^TASK_SECRET is required/);
    const c = loadConfig({ TASKS_AUTH: 'secret', TASK_SECRET: 'x'.repeat(32) });
    assert.equal(c.tasks.secret, 'x'.repeat(32));
  });

  test('cloud mode names every setting it is missing', () => {
    const issues = issuesOf({ TASKS_BACKEND: 'cloud' });
    for (const name of ['GCP_PROJECT_ID', 'GCP_LOCATION', 'PUBLIC_BASE_URL', 'TASKS_INVOKER_SERVICE_ACCOUNT']) {
      assert.ok(
        issues.some((l) => l.startsWith(`${name} is required when TASKS_BACKEND=cloud`)),
        `${name} missing from:\n${issues.join('\n')}`,
      );
    }
    const ok = loadConfig({
      TASKS_BACKEND: 'cloud',
      GCP_PROJECT_ID: 'acme-prod',
      GCP_LOCATION: 'europe-west1',
      PUBLIC_BASE_URL: 'https://svc-abc.a.run.app',
      SESSION_SECRET: 's'.repeat(40),
      TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks@acme-prod.iam.gserviceaccount.com',
    });
    assert.equal(ok.tasks.backend, 'cloud');
    assert.equal(ok.tasks.oidcAudience, 'https://svc-abc.a.run.app');
  });

  // A complete, safe cloud configuration: each unsafe one below changes one or two variables.
  const CLOUD: Record<string, string> = {
    TASKS_BACKEND: 'cloud',
    GCP_PROJECT_ID: 'acme-prod',
    GCP_LOCATION: 'europe-west1',
    PUBLIC_BASE_URL: 'https://svc-abc.a.run.app',
    SESSION_SECRET: 's'.repeat(40),
    TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks@acme-prod.iam.gserviceaccount.com',
  };
  const IAM = { ...CLOUD, TASKS_AUTH: 'cloud-run-iam' };

  test('GOOGLE_CLOUD_PROJECT (what Google runtimes set) stands in for GCP_PROJECT_ID', () => {
    const { GCP_PROJECT_ID: _, ...withoutProject } = CLOUD;
    assert.equal(
      loadConfig({ ...withoutProject, GOOGLE_CLOUD_PROJECT: 'from-runtime' }).tasks.projectId,
      'from-runtime',
    );
    assert.equal(loadConfig({ ...CLOUD, GOOGLE_CLOUD_PROJECT: 'from-runtime' }).tasks.projectId, 'acme-prod');
    assert.equal(loadConfig({ GOOGLE_CLOUD_PROJECT: 'from-runtime' }).tasks.projectId, 'from-runtime');
    const issues = issuesOf(withoutProject);
    assert.equal(issues.length, 1);
    assert.match(issues[0]!, /^GCP_PROJECT_ID is required when TASKS_BACKEND=cloud: .*GOOGLE_CLOUD_PROJECT/);
    assert.match(issuesOf({ GOOGLE_CLOUD_PROJECT: 'a b' })[0]!, /^GOOGLE_CLOUD_PROJECT="a b" is not valid/);
  });

  test('TASKS_PUSH_BASE_URL moves task pushes and their audience, not the links of PUBLIC_BASE_URL', () => {
    const c = loadConfig({ ...CLOUD, TASKS_PUSH_BASE_URL: 'https://tasks-xyz.a.run.app/' });
    assert.equal(c.publicBaseUrl, 'https://svc-abc.a.run.app');
    assert.equal(c.tasks.pushBaseUrl, 'https://tasks-xyz.a.run.app');
    assert.equal(c.tasks.oidcAudience, 'https://tasks-xyz.a.run.app');
    assert.equal(loadConfig(CLOUD).tasks.pushBaseUrl, 'https://svc-abc.a.run.app');
    assert.match(
      issuesOf({ TASKS_PUSH_BASE_URL: 'https://t.example.com/tasks' })[0]!,
      /^TASKS_PUSH_BASE_URL=.*no path, query or fragment/,
    );
  });

  test('cloud-run-iam is accepted in the shape Cloud Run gives: cloud backend, no HOST (or 0.0.0.0), no webhooks', () => {
    assert.equal(loadConfig(IAM).tasks.auth, 'cloud-run-iam');
    assert.equal(loadConfig({ ...IAM, HOST: '0.0.0.0' }).host, '0.0.0.0');
    // Replies are sent from the tasks service: the Graph API token belongs there.
    loadConfig({ ...IAM, WHATSAPP_ACCESS_TOKEN: 'EAAG', WHATSAPP_PHONE_NUMBER_ID: '1234' });
    // Plain http is fine locally (npm start), whatever the auth mode.
    assert.equal(loadConfig({ PUBLIC_BASE_URL: 'http://127.0.0.1:8080' }).publicBaseUrl, 'http://127.0.0.1:8080');
  });

  // Each refused at boot with one line naming the variables (the process exits 1 with it).
  const unsafe: Array<[string, Record<string, string>, RegExp]> = [
    [
      'cloud-run-iam with the local task backend',
      { TASKS_AUTH: 'cloud-run-iam' },
      /^TASKS_AUTH=cloud-run-iam is refused with TASKS_BACKEND=emulator: it trusts unsigned token claims/,
    ],
    [
      'cloud-run-iam with an external emulator',
      { TASKS_AUTH: 'cloud-run-iam', CLOUD_TASKS_EMULATOR_HOST: '127.0.0.1:8123' },
      /^TASKS_AUTH=cloud-run-iam is refused with TASKS_BACKEND=emulator/,
    ],
    [
      'cloud-run-iam on a chosen listen address',
      { ...IAM, HOST: '127.0.0.1' },
      /^TASKS_AUTH=cloud-run-iam is refused with HOST="127\.0\.0\.1": on Cloud Run HOST is unset/,
    ],
    [
      'cloud-run-iam on another interface',
      { ...IAM, HOST: '10.0.0.7' },
      /^TASKS_AUTH=cloud-run-iam is refused with HOST="10\.0\.0\.7"/,
    ],
    [
      'cloud-run-iam with the WhatsApp webhook',
      { ...IAM, WHATSAPP_APP_SECRET: 'meta-app-secret' },
      /^TASKS_AUTH=cloud-run-iam is refused with WHATSAPP_APP_SECRET set: webhooks need a public service/,
    ],
    [
      'cloud-run-iam with the Stripe webhook',
      { ...IAM, STRIPE_WEBHOOK_SECRET: 'whsec_abc' },
      /^TASKS_AUTH=cloud-run-iam is refused with STRIPE_WEBHOOK_SECRET set: .*TASKS_AUTH=oidc/,
    ],
    [
      'cloud-run-iam with both webhooks',
      { ...IAM, WHATSAPP_APP_SECRET: 'meta-app-secret', STRIPE_WEBHOOK_SECRET: 'whsec_abc' },
      /^TASKS_AUTH=cloud-run-iam is refused with WHATSAPP_APP_SECRET and STRIPE_WEBHOOK_SECRET set/,
    ],
    [
      'secret mode in cloud without a secret',
      { ...CLOUD, TASKS_AUTH: 'secret' },
      /^TASK_SECRET is required when TASKS_AUTH=secret/,
    ],
    [
      'oidc-or-secret in cloud without a secret',
      { ...CLOUD, TASKS_AUTH: 'oidc-or-secret' },
      /^TASK_SECRET is required when TASKS_AUTH=oidc-or-secret/,
    ],
    [
      'an http:// PUBLIC_BASE_URL in cloud mode',
      { ...CLOUD, PUBLIC_BASE_URL: 'http://svc-abc.a.run.app' },
      /^PUBLIC_BASE_URL="http:\/\/svc-abc\.a\.run\.app" is not valid when TASKS_BACKEND=cloud: expected an https:\/\/ URL$/,
    ],
    [
      'an http:// TASKS_PUSH_BASE_URL in cloud mode',
      { ...CLOUD, TASKS_PUSH_BASE_URL: 'http://tasks.internal' },
      /^TASKS_PUSH_BASE_URL="http:\/\/tasks\.internal" is not valid when TASKS_BACKEND=cloud/,
    ],
  ];
  for (const [label, env, expected] of unsafe) {
    test(`unsafe: ${label} is refused with one line`, () => {
      const issues = issuesOf(env);
      assert.equal(issues.length, 1, issues.join('\n'));
      assert.match(issues[0]!, expected);
    });
  }

  test('cloud mode refuses an emulator host', () => {
    const issues = issuesOf({
      TASKS_BACKEND: 'cloud',
      GCP_PROJECT_ID: 'p',
      GCP_LOCATION: 'us-central1',
      PUBLIC_BASE_URL: 'https://x.run.app',
      SESSION_SECRET: 's'.repeat(40),
      TASKS_INVOKER_SERVICE_ACCOUNT: 'a@p.iam.gserviceaccount.com',
      CLOUD_TASKS_EMULATOR_HOST: '127.0.0.1:8123',
    });
    assert.deepEqual(issues.length, 1);
    assert.match(issues[0]!, /^CLOUD_TASKS_EMULATOR_HOST must be unset/);
  });
});

describe("config: operators' login", () => {
  const LOGIN = {
    OAUTH_CLIENT_ID: 'client-id.apps.googleusercontent.com',
    OAUTH_CLIENT_SECRET: 'client-secret',
    ADMIN_EMAILS: ' Ops@Example.com ,second@example.com',
  };
  const CLOUD_BASE = {
    TASKS_BACKEND: 'cloud',
    GCP_PROJECT_ID: 'acme-prod',
    GCP_LOCATION: 'europe-west1',
    PUBLIC_BASE_URL: 'https://svc-abc.a.run.app',
    TASKS_INVOKER_SERVICE_ACCOUNT: 'tasks@acme-prod.iam.gserviceaccount.com',
  };

  test('cloud mode without login needs no SESSION_SECRET', () => {
    assert.equal(loadConfig(CLOUD_BASE).sessionSecret, undefined);
  });

  test('login in cloud mode needs a SESSION_SECRET', () => {
    const issues = issuesOf({ ...CLOUD_BASE, ...LOGIN });
    assert.equal(issues.length, 1, issues.join('\n'));
    assert.match(issues[0]!, /^SESSION_SECRET is required when OAUTH_CLIENT_ID is set and TASKS_BACKEND=cloud/);
    const c = loadConfig({ ...CLOUD_BASE, ...LOGIN, SESSION_SECRET: 's'.repeat(40) });
    assert.equal(c.oauth.clientId, LOGIN.OAUTH_CLIENT_ID);
    assert.equal(c.oauth.issuerUrl, 'https://accounts.google.com', 'Google by default');
    assert.deepEqual(c.adminEmails, ['ops@example.com', 'second@example.com'], 'trimmed and lower-cased');
  });

  test('login in local mode needs no SESSION_SECRET (local mode generates one)', () => {
    assert.equal(loadConfig(LOGIN).oauth.clientSecret, 'client-secret');
  });

  test('OAUTH_CLIENT_ID needs OAUTH_CLIENT_SECRET and someone in ADMIN_EMAILS', () => {
    const issues = issuesOf({ OAUTH_CLIENT_ID: 'client-id' });
    assert.equal(issues.length, 2, issues.join('\n'));
    assert.match(issues[0]!, /^OAUTH_CLIENT_SECRET is required when OAUTH_CLIENT_ID is set/);
    assert.match(issues[1]!, /^ADMIN_EMAILS is required when OAUTH_CLIENT_ID is set/);
    assert.match(issuesOf({ ...LOGIN, ADMIN_EMAILS: ' , ' })[0]!, /^ADMIN_EMAILS is required/);
    assert.match(issuesOf({ ...LOGIN, ADMIN_EMAILS: 'ops@example.com,not-an-email' })[0]!, /^ADMIN_EMAILS=/);
  });

  test('the issuer is reached over https, or http on this machine only', () => {
    assert.equal(
      loadConfig({ ...LOGIN, OAUTH_ISSUER_URL: 'http://127.0.0.1:9000' }).oauth.issuerUrl,
      'http://127.0.0.1:9000',
    );
    assert.ok(loadConfig({ ...LOGIN, OAUTH_ISSUER_URL: 'https://login.example.com/realms/ops' }));
    const issues = issuesOf({ ...LOGIN, OAUTH_ISSUER_URL: 'http://login.example.com' });
    assert.equal(issues.length, 1);
    assert.match(
      issues[0]!,
      /^OAUTH_ISSUER_URL="http:\/\/login\.example\.com" is not valid: expected an https:\/\/ issuer/,
    );
  });
});
