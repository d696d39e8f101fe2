// deploy/deploy.sh: the role bindings it makes (exactly those), the service and job settings it
// derives from the code, that secrets never reach its output, that a second run creates nothing,
// that it stops at the first failure, and that shellcheck passes. Google is replaced by a fake
// `gcloud` on PATH that records every call and keeps which resources exist.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tasks } from '../../src/task-registry.ts';
import { DEFAULT_DEADLINE_SECONDS } from '../../src/tasks/define-task.ts';

const SCRIPT = 'deploy/deploy.sh';
const PROJECT = 'acme-prod-1';
const RUNTIME = `serviceAccount:backend-runtime@${PROJECT}.iam.gserviceaccount.com`;
const SYNC = `serviceAccount:backend-sync@${PROJECT}.iam.gserviceaccount.com`;
const INVOKER_EMAIL = `backend-tasks-invoker@${PROJECT}.iam.gserviceaccount.com`;
const INVOKER = `serviceAccount:${INVOKER_EMAIL}`;

const work = mkdtempSync(join(tmpdir(), 'deploy-script-'));
after(() => rmSync(work, { recursive: true, force: true }));

function deploy(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('bash', [SCRIPT, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const dryRuns = new Map<string, string>();
/** The output of a dry run (each distinct one is run once: the script takes a second or two). */
const dryRun = (extra: string[] = [], env: Record<string, string> = {}) => {
  const id = JSON.stringify([extra, env]);
  const cached = dryRuns.get(id);
  if (cached !== undefined) return cached;
  const r = deploy(['--dry-run', '--project', PROJECT, ...extra], env);
  assert.equal(r.code, 0, r.err);
  dryRuns.set(id, r.out);
  return r.out;
};

/** The printed commands, each as its argument list (the dry run's "+ …" lines). */
const commands = (out: string): string[][] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('+ '))
    .map((l) => [...l.slice(2).matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!))
    .filter((argv) => argv.at(-1) !== '\\'); // the "describe || \" checks

const flag = (argv: string[], name: string) => argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);

/** Every IAM binding as "resource-kind resource member role". */
function bindings(out: string): string[] {
  return commands(out)
    .filter((c) => c.includes('add-iam-policy-binding'))
    .map((c) => {
      const i = c.indexOf('add-iam-policy-binding');
      return `${c[i - 1]} ${c[i + 1]} ${flag(c, '--member')} ${flag(c, '--role')}`;
    })
    .sort();
}

const envOf = (argv: string[]) => {
  const raw = flag(argv, '--set-env-vars') ?? '';
  // gcloud's alternative delimiter: ^X^ in front
  const [sep, list] = /^\^.\^/.test(raw) ? [raw[1]!, raw.slice(3)] : [',', raw];
  return Object.fromEntries(list.split(sep).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
};
const secretsOf = (argv: string[]) => (flag(argv, '--set-secrets') ?? '').split(',').filter(Boolean).sort();
const find = (out: string, ...words: string[]) => {
  const found = commands(out).filter((c) => words.every((w) => c.includes(w)));
  assert.equal(found.length, 1, `one command with ${words.join(' ')}`);
  return found[0]!;
};

describe('deploy/deploy.sh', () => {
  test('grants exactly these roles, each to the account that needs it and no wider', () => {
    const expected = [
      `projects ${PROJECT} ${RUNTIME} roles/cloudtasks.enqueuer`,
      `projects ${PROJECT} ${RUNTIME} roles/cloudtasks.viewer`,
      `projects ${PROJECT} ${RUNTIME} roles/cloudscheduler.viewer`,
      `projects ${PROJECT} ${RUNTIME} roles/cloudsql.client`,
      `projects ${PROJECT} ${SYNC} roles/cloudtasks.queueAdmin`,
      `projects ${PROJECT} ${SYNC} roles/cloudscheduler.admin`,
      // actAs on the invoker account only, for the two callers that name it in an oidcToken
      `service-accounts ${INVOKER_EMAIL} ${RUNTIME} roles/iam.serviceAccountUser`,
      `service-accounts ${INVOKER_EMAIL} ${SYNC} roles/iam.serviceAccountUser`,
      // secrets one by one, to the runtime only
      `secrets backend-database-url ${RUNTIME} roles/secretmanager.secretAccessor`,
      `secrets backend-session-secret ${RUNTIME} roles/secretmanager.secretAccessor`,
      `secrets backend-whatsapp-verify-token ${RUNTIME} roles/secretmanager.secretAccessor`,
      // the invoker's one role
      `services backend ${INVOKER} roles/run.invoker`,
    ].sort();
    assert.deepEqual(bindings(dryRun()), expected);

    const controls = bindings(dryRun(['--dashboard-controls']));
    assert.deepEqual(
      controls.filter((b) => !expected.includes(b)),
      [
        `projects ${PROJECT} ${RUNTIME} roles/cloudscheduler.admin`,
        `projects ${PROJECT} ${RUNTIME} roles/cloudtasks.queueAdmin`,
      ],
    );
  });

  test('the request timeout covers the longest task deadline in the registry', () => {
    const longest = Math.max(...tasks.map((t) => t.deadlineSeconds ?? DEFAULT_DEADLINE_SECONDS));
    const run = find(dryRun(), 'run', 'deploy', 'backend');
    const timeout = Number(flag(run, '--timeout'));
    assert.ok(timeout >= longest, `--timeout=${timeout} < ${longest}`);
    assert.equal(timeout, longest + 60);
    const refused = deploy(['--dry-run', '--project', PROJECT, '--timeout', String(longest - 1)]);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /shorter than the longest task deadline/);
  });

  test('one public service that verifies push tokens itself, with Cloud SQL, env and secrets', () => {
    const out = dryRun();
    const run = find(out, 'run', 'deploy', 'backend');
    assert.ok(run.includes('--allow-unauthenticated'));
    assert.equal(flag(run, '--service-account'), RUNTIME.replace('serviceAccount:', ''));
    assert.equal(flag(run, '--concurrency'), '40');
    assert.equal(flag(run, '--min-instances'), '1');
    assert.ok(run.includes('--no-cpu-throttling'));
    assert.equal(flag(run, '--set-cloudsql-instances'), `${PROJECT}:us-central1:backend-db`);
    const env = envOf(run);
    assert.equal(env.TASKS_BACKEND, 'cloud');
    assert.equal(env.TASKS_AUTH, 'oidc');
    assert.equal(env.GCP_PROJECT_ID, PROJECT);
    assert.equal(env.TASKS_INVOKER_SERVICE_ACCOUNT, INVOKER_EMAIL);
    assert.match(env.PUBLIC_BASE_URL!, /^https:\/\/backend-PROJECT_NUMBER\.us-central1\.run\.app$/);
    assert.equal(env.TASKS_PUSH_BASE_URL, undefined);
    assert.deepEqual(secretsOf(run), [
      'DATABASE_URL=backend-database-url:latest',
      'SESSION_SECRET=backend-session-secret:latest',
      'WHATSAPP_VERIFY_TOKEN=backend-whatsapp-verify-token:latest',
    ]);
    assert.match(out, /Callback URL: {2}https:\/\/backend-PROJECT_NUMBER\.us-central1\.run\.app\/webhooks\/whatsapp/);
    assert.match(
      out,
      /Verify token: {2}\$\(gcloud secrets versions access latest --secret=backend-whatsapp-verify-token/,
    );
    assert.match(out, /Endpoint URL: {2}https:\/\/.*\/webhooks\/stripe/);
    assert.match(out, /checkout\.session\.completed, checkout\.session\.async_payment_succeeded/);
  });

  test('Cloud SQL, then migrate, queues sync, the service, schedules sync: each job executed and waited for', () => {
    const out = dryRun();
    const all = commands(out);
    const at = (...words: string[]) => all.findIndex((c) => words.every((w) => c.includes(w)));
    assert.ok(at('sql', 'instances', 'create') >= 0 && at('sql', 'databases', 'create') >= 0);
    const sql = find(out, 'sql', 'instances', 'create');
    assert.ok(sql.includes('--database-version=POSTGRES_17') && sql.includes('--deletion-protection'));
    const jobs = ['migrate', 'queues,sync', 'schedules,sync'].map((args) => {
      const job = all.find(
        (c) => c.includes('jobs') && c.includes('deploy') && flag(c, '--args') === `bin/backend.js,${args}`,
      );
      assert.ok(job, args);
      return job;
    });
    const [migrate, queues, schedules] = jobs as [string[], string[], string[]];
    assert.equal(flag(migrate, '--service-account'), RUNTIME.replace('serviceAccount:', ''));
    assert.ok(flag(migrate, '--set-cloudsql-instances'));
    assert.ok(secretsOf(migrate).includes('DATABASE_URL=backend-database-url:latest'));
    for (const sync of [queues, schedules]) {
      assert.equal(flag(sync, '--service-account'), SYNC.replace('serviceAccount:', ''));
      assert.equal(flag(sync, '--set-secrets'), undefined, 'the sync jobs read no secret');
      assert.equal(flag(sync, '--set-cloudsql-instances'), undefined, 'nor the database');
      assert.equal(envOf(sync).SESSION_SECRET?.length ? 'set' : 'unset', 'set');
    }
    const executed = (name: string) => at('jobs', 'execute', name, '--wait');
    assert.ok(executed('backend-migrate') > at('jobs', 'deploy', 'backend-migrate'));
    assert.ok(executed('backend-migrate') < at('run', 'deploy', 'backend'));
    assert.ok(executed('backend-queues-sync') < at('run', 'deploy', 'backend'));
    assert.ok(executed('backend-schedules-sync') > at('run', 'deploy', 'backend'));
  });

  test('secrets from the environment are stored through stdin, never printed; webhooks only on the public service', () => {
    const env = {
      WHATSAPP_APP_SECRET: 'meta-app-secret-value-1234',
      STRIPE_WEBHOOK_SECRET: 'whsec_stripe-secret-value-5678',
      LLM_API_KEY: 'llm-key-value-9012',
      ADMIN_EMAILS: 'a@example.com,b@example.com',
    };
    const out = dryRun([], env);
    for (const value of [env.WHATSAPP_APP_SECRET, env.STRIPE_WEBHOOK_SECRET, env.LLM_API_KEY]) {
      assert.ok(!out.includes(value), 'a secret value reached the output');
    }
    assert.match(
      out,
      /gcloud secrets create backend-whatsapp-app-secret .*--data-file=- .*\(secret value, not shown\)/,
    );
    assert.match(out, /gcloud sql users create backend --instance=backend-db '--password=\(hidden\)'/);
    const run = find(out, 'run', 'deploy', 'backend');
    assert.ok(secretsOf(run).includes('WHATSAPP_APP_SECRET=backend-whatsapp-app-secret:latest'));
    assert.ok(secretsOf(run).includes('STRIPE_WEBHOOK_SECRET=backend-stripe-webhook-secret:latest'));
    assert.equal(envOf(run).ADMIN_EMAILS, 'a@example.com,b@example.com', 'a comma inside a value survives');

    const split = dryRun(['--topology', 'split'], env);
    const tasksService = find(split, 'run', 'deploy', 'backend', '--no-allow-unauthenticated');
    const webhooks = find(split, 'run', 'deploy', 'backend-webhooks');
    assert.equal(envOf(tasksService).TASKS_AUTH, 'cloud-run-iam');
    assert.ok(!secretsOf(tasksService).some((s) => /WHATSAPP_APP_SECRET|STRIPE_WEBHOOK_SECRET|VERIFY/.test(s)));
    assert.ok(webhooks.includes('--allow-unauthenticated'));
    assert.equal(envOf(webhooks).TASKS_AUTH, 'oidc');
    assert.equal(envOf(webhooks).TASKS_PUSH_BASE_URL, 'https://backend-PROJECT_NUMBER.us-central1.run.app');
    assert.equal(envOf(webhooks).PUBLIC_BASE_URL, 'https://backend-webhooks-PROJECT_NUMBER.us-central1.run.app');
    assert.equal(envOf(tasksService).PUBLIC_BASE_URL, envOf(webhooks).PUBLIC_BASE_URL, 'links in replies are public');
    assert.ok(secretsOf(webhooks).includes('WHATSAPP_APP_SECRET=backend-whatsapp-app-secret:latest'));
    assert.deepEqual(
      bindings(split).filter((b) => b.includes('run.invoker')),
      [`services backend ${INVOKER} roles/run.invoker`, `services backend-webhooks ${INVOKER} roles/run.invoker`],
    );
  });

  test('refuses to guess a project, and bad values', () => {
    const none = deploy(['--dry-run']);
    assert.equal(none.code, 2);
    assert.match(none.err, /--project is required/);
    assert.equal(deploy(['--dry-run', '--project', PROJECT, '--topology', 'mesh']).code, 2);
    assert.equal(deploy(['--dry-run', '--project', PROJECT, '--bogus']).code, 2);
    assert.equal(deploy(['--dry-run', '--project', 'Bad_Project']).code, 2);
  });

  describe('against a fake gcloud', () => {
    const bin = join(work, 'bin');
    const state = join(work, 'state');
    spawnSync('mkdir', ['-p', bin, state]);
    // Records each call; describe answers from what was created; `secrets create` keeps stdin.
    writeFileSync(
      join(bin, 'gcloud'),
      `#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_STATE/calls"
if [[ -n "\${FAKE_FAIL:-}" && "$*" == *"$FAKE_FAIL"* ]]; then echo "ERROR: (gcloud) injected failure" >&2; exit 1; fi
key() { printf '%s' "$1:\${2%%@*}" | tr '/:@' '___'; }
case "$1 $2 $3" in
  "projects describe "*) echo 123456789012; exit 0 ;;
  "secrets versions access") name="\${5#--secret=}"; cat "$FAKE_STATE/value-$name"; exit 0 ;;
  "secrets versions add") cat > "$FAKE_STATE/value-$4"; exit 0 ;;
esac
for kind in "iam service-accounts" "sql instances" "sql databases" "sql users" "secrets" "artifacts repositories"; do
  if [[ "$*" == "$kind describe "* || "$*" == "$kind create "* ]]; then
    all="$*"; rest="\${all#"$kind "}"; verb="\${rest%% *}"; rest="\${rest#* }"; name="\${rest%% *}"
    k="$(key "\${kind// /-}" "$name")"
    if [[ "$verb" == describe ]]; then [[ -e "$FAKE_STATE/has-$k" ]]; exit; fi
    touch "$FAKE_STATE/has-$k"
    if [[ "$kind" == secrets ]]; then cat > "$FAKE_STATE/value-$name"; fi
    exit 0
  fi
done
exit 0
`,
    );
    chmodSync(join(bin, 'gcloud'), 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}`, FAKE_STATE: state };
    const calls = () => readFileSync(join(state, 'calls'), 'utf8').trim().split('\n');

    test('runs every command; a second run creates nothing and keeps the database password', () => {
      const first = deploy(['--project', PROJECT], env);
      assert.equal(first.code, 0, first.err);
      const made = calls().filter((c) => / create /.test(c));
      assert.ok(made.some((c) => c.startsWith('sql instances create backend-db')));
      assert.ok(made.some((c) => c.startsWith('sql users create backend')));
      assert.ok(calls().some((c) => c.startsWith('run jobs execute backend-schedules-sync')));
      const url = readFileSync(join(state, 'value-backend-database-url'), 'utf8');
      assert.match(
        url,
        /^postgres:\/\/backend:[0-9a-f]{64}@\/backend\?host=\/cloudsql\/acme-prod-1:us-central1:backend-db$/,
      );
      assert.ok(!first.out.includes(url.split(':')[2]!.split('@')[0]!), 'the password was printed');
      assert.match(first.out, /backend-123456789012\.us-central1\.run\.app\/webhooks\/whatsapp/);
      const verify = readFileSync(join(state, 'value-backend-whatsapp-verify-token'), 'utf8');
      assert.ok(!first.out.includes(verify), 'the verify token is shown only on a terminal');

      writeFileSync(join(state, 'calls'), '');
      const second = deploy(['--project', PROJECT], env);
      assert.equal(second.code, 0, second.err);
      assert.deepEqual(
        calls().filter((c) => / create /.test(c) || /set-password|versions add/.test(c)),
        [],
      );
      assert.equal(readFileSync(join(state, 'value-backend-database-url'), 'utf8'), url);
      assert.ok(
        calls().some((c) => c.startsWith('run deploy backend ')),
        'the service is deployed again',
      );
    });

    test('stops at the first failing command', () => {
      rmSync(state, { recursive: true, force: true });
      spawnSync('mkdir', ['-p', state]);
      const r = deploy(['--project', PROJECT], { ...env, FAKE_FAIL: 'run jobs execute backend-migrate' });
      assert.notEqual(r.code, 0);
      assert.ok(calls().at(-1)!.startsWith('run jobs execute backend-migrate'));
      assert.ok(!calls().some((c) => c.startsWith('run deploy')), 'the service was deployed after a failed migration');
    });
  });

  test('shellcheck passes on deploy/*.sh', (t) => {
    const which = spawnSync('sh', ['-c', 'command -v shellcheck'], { encoding: 'utf8' });
    if (which.status !== 0) {
      t.skip('shellcheck is not installed here (CI installs it)');
      return;
    }
    const r = spawnSync('shellcheck', [SCRIPT], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
