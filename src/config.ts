// The one configuration schema: environment → typed, frozen Config, validated once at boot.
import { z } from 'zod';

export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: string[]) {
    super(issues.join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Variables whose values never appear in an error message or a log line. */
export const SECRET_VARIABLES = [
  'DATABASE_URL',
  'TASK_SECRET',
  'WHATSAPP_VERIFY_TOKEN',
  'WHATSAPP_APP_SECRET',
  'WHATSAPP_ACCESS_TOKEN',
  'LLM_API_KEY',
  'STRIPE_WEBHOOK_SECRET',
  'STRIPE_SECRET_KEY',
  'OAUTH_CLIENT_SECRET',
  'SESSION_SECRET',
] as const;

// An empty variable means unset: `FOO= npm start` must behave like no FOO at all.
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema.optional());

const httpUrl = (expected = 'an http(s) URL such as https://example.com') =>
  z.string().refine(
    (v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { error: `expected ${expected}` },
  );

const bool = z
  .enum(['true', 'false', '1', '0'], { error: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1');

const intIn = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: `expected an integer from ${min} to ${max}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { error: `expected an integer from ${min} to ${max}` });

const email = z.email({ error: 'expected an e-mail address' });

const secret32 = z.string().min(32, { error: 'expected at least 32 characters' });

const projectId = z
  .string()
  .regex(/^[A-Za-z0-9\-:.]{1,100}$/, { error: 'expected a project id of letters, digits, -, : and .' });

const databaseUrl = z.string().refine((v) => v === 'memory://' || /^postgres(ql)?:\/\//.test(v), {
  error: 'expected postgres://user:password@host:port/database (or ?host=/cloudsql/… for a socket) or memory://',
});

export const envSchema = z.object({
  PORT: optional(intIn(1, 65535)),
  HOST: optional(z.string().min(1)),
  PUBLIC_BASE_URL: optional(httpUrl('an http(s) URL with no path, query or fragment, such as https://api.example.com')),
  TASKS_PUSH_BASE_URL: optional(
    httpUrl('an http(s) URL with no path, query or fragment, such as https://tasks.example.com'),
  ),
  DATA_DIR: optional(z.string().min(1)),
  DATABASE_URL: optional(databaseUrl),
  TASKS_BACKEND: optional(z.enum(['emulator', 'cloud'], { error: 'expected emulator or cloud' })),
  CLOUD_TASKS_EMULATOR_HOST: optional(
    z.string().regex(/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/, { error: 'expected host:port, such as 127.0.0.1:8123' }),
  ),
  GCP_PROJECT_ID: optional(projectId),
  // What Google's runtimes set: the fallback for GCP_PROJECT_ID.
  GOOGLE_CLOUD_PROJECT: optional(projectId),
  GCP_LOCATION: optional(z.string().regex(/^[a-z0-9-]{1,63}$/, { error: 'expected a location such as us-central1' })),
  TASKS_INVOKER_SERVICE_ACCOUNT: optional(email),
  TASKS_OIDC_AUDIENCE: optional(z.string().min(1)),
  TASKS_AUTH: optional(
    z.enum(['oidc', 'cloud-run-iam', 'secret', 'oidc-or-secret'], {
      error: 'expected oidc, cloud-run-iam, secret or oidc-or-secret',
    }),
  ),
  TASK_SECRET: optional(secret32),
  WHATSAPP_VERIFY_TOKEN: optional(z.string()),
  WHATSAPP_APP_SECRET: optional(z.string()),
  WHATSAPP_ACCESS_TOKEN: optional(z.string()),
  WHATSAPP_PHONE_NUMBER_ID: optional(z.string().regex(/^\d+$/, { error: 'expected the numeric phone number id' })),
  WHATSAPP_API_BASE_URL: optional(httpUrl()),
  LLM_BASE_URL: optional(httpUrl('an OpenAI-compatible base URL such as http://localhost:11434/v1')),
  LLM_API_KEY: optional(z.string()),
  LLM_MODEL: optional(z.string().min(1)),
  STRIPE_WEBHOOK_SECRET: optional(
    z.string().startsWith('whsec_', { error: 'expected a Stripe signing secret (whsec_…)' }),
  ),
  STRIPE_PAYMENT_LINK_URL: optional(httpUrl('an https://buy.stripe.com/… Payment Link URL')),
  STRIPE_SECRET_KEY: optional(
    z.string().regex(/^(sk|rk)_(live|test)_\w+$/, {
      error: 'expected a Stripe secret or restricted key (sk_live_…, sk_test_…, rk_…)',
    }),
  ),
  STRIPE_API_BASE_URL: optional(httpUrl()),
  OAUTH_ISSUER_URL: optional(httpUrl()),
  OAUTH_CLIENT_ID: optional(z.string()),
  OAUTH_CLIENT_SECRET: optional(z.string()),
  ADMIN_EMAILS: optional(
    z
      .string()
      .transform((v) =>
        v
          .split(',')
          .map((s) => s.trim().toLowerCase())
          .filter(Boolean),
      )
      .pipe(z.array(z.email({ error: 'expected a comma-separated list of e-mail addresses' }))),
  ),
  SESSION_SECRET: optional(secret32),
  SCRAPER_ALLOW_PRIVATE_NETWORKS: optional(bool),
  LOG_LEVEL: optional(
    z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
      error: 'expected trace, debug, info, warn, error, fatal or silent',
    }),
  ),
  LOG_FORMAT: optional(z.enum(['json', 'pretty'], { error: 'expected json or pretty' })),
  TASK_RUN_RETENTION_DAYS: optional(intIn(1, 3650)),
  SIGNUP_CREDITS: optional(intIn(0, 1_000_000)),
  MONTHLY_GRANT_BATCH_SIZE: optional(intIn(1, 10_000)),
  POST_COST_CREDITS: optional(intIn(1, 1_000)),
  EMULATOR_GRPC_PORT: optional(intIn(0, 65535)),
  EMULATOR_HTTP_PORT: optional(intIn(0, 65535)),
  TASKS_OIDC_ISSUER: optional(httpUrl('the http(s) URL of the token issuer, such as http://127.0.0.1:8124')),
  SHUTDOWN_TIMEOUT_MS: optional(intIn(0, 60_000)),
  SHED_EVENT_LOOP_LAG_MS: optional(intIn(0, 60_000)),
  SHED_DB_WAITING: optional(intIn(0, 100_000)),
  // Observability (docs/observability.md): nothing is exported unless one of these says where.
  TRACE_EXPORTER: optional(z.enum(['none', 'otlp', 'cloud-trace'], { error: 'expected none, otlp or cloud-trace' })),
  TRACE_SAMPLE_RATIO: optional(
    z
      .string()
      .regex(/^(0(\.\d+)?|1(\.0+)?)$/, { error: 'expected a number from 0 to 1, such as 0.1' })
      .transform(Number),
  ),
  METRICS_EXPORTER: optional(z.enum(['none', 'prometheus', 'otlp'], { error: 'expected none, prometheus or otlp' })),
  METRICS_HOST: optional(z.string().min(1)),
  METRICS_PORT: optional(intIn(1, 65535)),
  OTEL_EXPORTER_OTLP_ENDPOINT: optional(httpUrl('the OTLP/HTTP base URL, such as http://127.0.0.1:4318')),
  OTEL_METRIC_EXPORT_INTERVAL: optional(intIn(1000, 3_600_000)),
  OTEL_SERVICE_NAME: optional(z.string().min(1)),
  K_SERVICE: optional(z.string().min(1)),
  K_REVISION: optional(z.string().min(1)),
});

export type TasksAuthMode = 'oidc' | 'cloud-run-iam' | 'secret' | 'oidc-or-secret';

export type DatabaseConfig =
  | { readonly kind: 'pglite'; readonly dataDir: string | null } // null: in memory
  | { readonly kind: 'postgres'; readonly url: string };

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string;
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  readonly tasks: {
    readonly backend: 'emulator' | 'cloud';
    readonly emulatorHost: string | undefined;
    readonly projectId: string;
    /** Base of task push URLs (TASKS_PUSH_BASE_URL, else PUBLIC_BASE_URL): the service that runs tasks. */
    readonly pushBaseUrl: string;
    readonly location: string;
    readonly invokerServiceAccount: string;
    readonly oidcAudience: string;
    readonly auth: TasksAuthMode;
    readonly secret: string | undefined;
    readonly runRetentionDays: number;
    /** Ports of the embedded emulator (local mode without CLOUD_TASKS_EMULATOR_HOST). */
    readonly emulatorGrpcPort: number;
    readonly emulatorHttpPort: number;
    /** Issuer of push tokens when it is not Google's nor the embedded emulator's (an external emulator). */
    readonly oidcIssuer: string | undefined;
  };
  readonly whatsapp: {
    readonly verifyToken: string | undefined;
    readonly appSecret: string | undefined;
    readonly accessToken: string | undefined;
    readonly phoneNumberId: string | undefined;
    readonly apiBaseUrl: string;
  };
  readonly llm: {
    readonly baseUrl: string | undefined;
    readonly apiKey: string | undefined;
    readonly model: string | undefined;
  };
  readonly stripe: {
    readonly webhookSecret: string | undefined;
    readonly paymentLinkUrl: string | undefined;
    /** Reads a session's line items, and sets the mode (live or test) events must have. */
    readonly secretKey: string | undefined;
    /** Stripe's API server (a local fake in tests). */
    readonly apiBaseUrl: string | undefined;
  };
  readonly credits: {
    /** Credits a new account starts with (its sign-up grant). */
    readonly signupCredits: number;
    /** Accounts per transaction in credits.monthly_grant. */
    readonly monthlyGrantBatchSize: number;
    /** Credits one blog post costs. */
    readonly postCost: number;
  };
  readonly oauth: {
    readonly issuerUrl: string;
    readonly clientId: string | undefined;
    readonly clientSecret: string | undefined;
  };
  readonly adminEmails: readonly string[];
  /** Keys the dashboard's CSRF tokens; required with login in cloud mode; in local mode main.ts fills it from $DATA_DIR (local-secrets.ts). */
  readonly sessionSecret: string | undefined;
  readonly scraperAllowPrivateNetworks: boolean;
  readonly log: { readonly level: string; readonly format: 'json' | 'pretty' | undefined };
  readonly shutdownTimeoutMs: number;
  /** Load shedding (http/plugins/load-shedding.ts): past either limit, pushes and webhooks get 503. 0 turns a check off. */
  readonly shedding: { readonly eventLoopLagMs: number; readonly dbWaiting: number };
  readonly observability: ObservabilityConfig;
}

/** Tracing, metrics and error reporting (docs/observability.md). */
export interface ObservabilityConfig {
  /** Cloud Run's service and revision (K_SERVICE, K_REVISION), or OTEL_SERVICE_NAME. */
  readonly serviceName: string;
  readonly serviceVersion: string;
  readonly traceExporter: 'none' | 'otlp' | 'cloud-trace';
  /** Share of new traces recorded when exporting; a trace keeps the decision of its first span. */
  readonly traceSampleRatio: number;
  readonly metricsExporter: 'none' | 'prometheus' | 'otlp';
  /** Where Prometheus scrapes /metrics: a port of its own, loopback unless told otherwise. */
  readonly metricsHost: string;
  readonly metricsPort: number;
  readonly otlpEndpoint: string | undefined;
  readonly metricExportIntervalMs: number;
}

type Env = Record<string, string | undefined>;

function describeIssue(issue: z.core.$ZodIssue, env: Env): string {
  const variable = String(issue.path[0] ?? 'environment');
  const raw = env[variable];
  const shown = (SECRET_VARIABLES as readonly string[]).includes(variable)
    ? '(value hidden)'
    : JSON.stringify(raw ?? '');
  return `${variable}=${shown} is not valid: ${issue.message}`;
}

/** Validates the environment; throws ConfigError with one line per invalid variable. */
export function loadConfig(env: Env = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => describeIssue(i, env)));
  }
  const e = parsed.data;
  const problems: string[] = [];
  const port = e.PORT ?? 8080;
  const backend = e.TASKS_BACKEND ?? 'emulator';
  const cloud = backend === 'cloud';

  /** The origin of a base URL; a path, query or fragment is a problem (URLs are built by appending). */
  const origin = (name: string, value: string) => {
    const u = new URL(value);
    if (u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) {
      problems.push(
        `${name}=${JSON.stringify(value)} is not valid: expected an http(s) URL with no path, query or fragment`,
      );
    }
    // Tokens and task bodies travel to these URLs: in cloud mode never in clear text.
    if (cloud && u.protocol !== 'https:') {
      problems.push(`${name}=${JSON.stringify(value)} is not valid when TASKS_BACKEND=cloud: expected an https:// URL`);
    }
    return u.origin;
  };
  const publicBaseUrl = origin('PUBLIC_BASE_URL', e.PUBLIC_BASE_URL ?? `http://localhost:${port}`);
  const pushBaseUrl =
    e.TASKS_PUSH_BASE_URL === undefined ? publicBaseUrl : origin('TASKS_PUSH_BASE_URL', e.TASKS_PUSH_BASE_URL);

  const auth = e.TASKS_AUTH ?? 'oidc';
  if (auth === 'cloud-run-iam') problems.push(...cloudRunIamProblems(e, backend));
  if ((auth === 'secret' || auth === 'oidc-or-secret') && !e.TASK_SECRET) {
    problems.push(`TASK_SECRET is required when TASKS_AUTH=${auth}: expected at least 32 characters`);
  }
  if (e.WHATSAPP_ACCESS_TOKEN && !e.WHATSAPP_PHONE_NUMBER_ID) {
    problems.push(
      'WHATSAPP_PHONE_NUMBER_ID is required when WHATSAPP_ACCESS_TOKEN is set: expected the numeric phone number id replies are sent from',
    );
  }
  if (e.LLM_BASE_URL && !e.LLM_MODEL) {
    problems.push(
      'LLM_MODEL is required when LLM_BASE_URL is set: expected the model name, such as gpt-4o-mini or llama3.1',
    );
  }
  problems.push(...loginProblems(e, cloud));
  if (cloud) {
    const need = (name: keyof typeof e, why: string) => {
      if (e[name] === undefined) problems.push(`${name} is required when TASKS_BACKEND=cloud: ${why}`);
    };
    if (e.GCP_PROJECT_ID === undefined && e.GOOGLE_CLOUD_PROJECT === undefined) {
      need('GCP_PROJECT_ID', 'expected the Google Cloud project id that holds the queues (or GOOGLE_CLOUD_PROJECT)');
    }
    need('GCP_LOCATION', 'expected the Cloud Tasks location, such as us-central1');
    need('PUBLIC_BASE_URL', 'expected the Cloud Run service URL that tasks are pushed to');
    if (auth !== 'secret') need('TASKS_INVOKER_SERVICE_ACCOUNT', 'expected the service account in the OIDC tokens');
    if (e.CLOUD_TASKS_EMULATOR_HOST) {
      problems.push(
        'CLOUD_TASKS_EMULATOR_HOST must be unset when TASKS_BACKEND=cloud: expected no emulator in cloud mode',
      );
    }
  }
  const observability = observabilityConfig(e, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const dataDir = e.DATA_DIR ?? '.data';
  const database: DatabaseConfig =
    e.DATABASE_URL === undefined
      ? { kind: 'pglite', dataDir: `${dataDir}/pglite` }
      : e.DATABASE_URL === 'memory://'
        ? { kind: 'pglite', dataDir: null }
        : { kind: 'postgres', url: e.DATABASE_URL };

  const config: Config = {
    port,
    host: e.HOST ?? '0.0.0.0',
    publicBaseUrl,
    dataDir,
    database,
    tasks: {
      backend,
      emulatorHost: e.CLOUD_TASKS_EMULATOR_HOST,
      projectId: e.GCP_PROJECT_ID ?? e.GOOGLE_CLOUD_PROJECT ?? 'local',
      location: e.GCP_LOCATION ?? 'us-central1',
      invokerServiceAccount: e.TASKS_INVOKER_SERVICE_ACCOUNT ?? 'tasks-invoker@local.iam.gserviceaccount.com',
      pushBaseUrl,
      oidcAudience: e.TASKS_OIDC_AUDIENCE ?? pushBaseUrl,
      auth,
      secret: e.TASK_SECRET,
      runRetentionDays: e.TASK_RUN_RETENTION_DAYS ?? 30,
      emulatorGrpcPort: e.EMULATOR_GRPC_PORT ?? 8123,
      emulatorHttpPort: e.EMULATOR_HTTP_PORT ?? 8124,
      oidcIssuer: e.TASKS_OIDC_ISSUER?.replace(/\/+$/, ''),
    },
    whatsapp: {
      verifyToken: e.WHATSAPP_VERIFY_TOKEN,
      appSecret: e.WHATSAPP_APP_SECRET,
      accessToken: e.WHATSAPP_ACCESS_TOKEN,
      phoneNumberId: e.WHATSAPP_PHONE_NUMBER_ID,
      apiBaseUrl: (e.WHATSAPP_API_BASE_URL ?? 'https://graph.facebook.com/v23.0').replace(/\/+$/, ''),
    },
    llm: { baseUrl: e.LLM_BASE_URL, apiKey: e.LLM_API_KEY, model: e.LLM_MODEL },
    stripe: {
      webhookSecret: e.STRIPE_WEBHOOK_SECRET,
      paymentLinkUrl: e.STRIPE_PAYMENT_LINK_URL,
      secretKey: e.STRIPE_SECRET_KEY,
      apiBaseUrl: e.STRIPE_API_BASE_URL,
    },
    credits: {
      signupCredits: e.SIGNUP_CREDITS ?? 10,
      monthlyGrantBatchSize: e.MONTHLY_GRANT_BATCH_SIZE ?? 500,
      postCost: e.POST_COST_CREDITS ?? 1,
    },
    oauth: {
      issuerUrl: e.OAUTH_ISSUER_URL ?? 'https://accounts.google.com',
      clientId: e.OAUTH_CLIENT_ID,
      clientSecret: e.OAUTH_CLIENT_SECRET,
    },
    adminEmails: e.ADMIN_EMAILS ?? [],
    sessionSecret: e.SESSION_SECRET,
    scraperAllowPrivateNetworks: e.SCRAPER_ALLOW_PRIVATE_NETWORKS ?? false,
    log: { level: e.LOG_LEVEL ?? 'info', format: e.LOG_FORMAT },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS ?? 9_000,
    // Shedding on lag by default only in Google Cloud: locally (one machine, an embedded database
    // that runs on the same thread) a pause of the laptop or a long local query is not overload,
    // and a 503 to a developer's curl helps nobody.
    shedding: {
      eventLoopLagMs: e.SHED_EVENT_LOOP_LAG_MS ?? (backend === 'cloud' ? 500 : 0),
      dbWaiting: e.SHED_DB_WAITING ?? 40,
    },
    observability,
  };
  return deepFreeze(config);
}

/**
 * Operators' login is configured by OAUTH_CLIENT_ID; then it needs its secret, someone to let in,
 * an issuer reached over https (http only on this machine, for a local provider), and, in cloud
 * mode, a SESSION_SECRET shared by every instance (local mode generates one in $DATA_DIR).
 */
function loginProblems(e: z.infer<typeof envSchema>, cloud: boolean): string[] {
  if (e.OAUTH_CLIENT_ID === undefined) return [];
  const problems: string[] = [];
  const when = 'when OAUTH_CLIENT_ID is set';
  if (e.OAUTH_CLIENT_SECRET === undefined) {
    problems.push(`OAUTH_CLIENT_SECRET is required ${when}: expected the client secret from the provider`);
  }
  if ((e.ADMIN_EMAILS ?? []).length === 0) {
    problems.push(`ADMIN_EMAILS is required ${when}: expected the comma-separated e-mails allowed into the dashboard`);
  }
  if (cloud && e.SESSION_SECRET === undefined) {
    problems.push(
      `SESSION_SECRET is required ${when} and TASKS_BACKEND=cloud: expected at least 32 random characters, the same on every instance`,
    );
  }
  if (e.OAUTH_ISSUER_URL !== undefined) {
    const issuer = new URL(e.OAUTH_ISSUER_URL);
    if (issuer.protocol !== 'https:' && !/^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/.test(issuer.hostname)) {
      problems.push(
        `OAUTH_ISSUER_URL=${JSON.stringify(e.OAUTH_ISSUER_URL)} is not valid: expected an https:// issuer (http only on localhost)`,
      );
    }
  }
  return problems;
}

/**
 * `cloud-run-iam` reads token claims without checking a signature: safe only when every request
 * comes through Cloud Run's front end, which verified the token with IAM (and removed the
 * signature) before the request got here. One line per setting that breaks that premise.
 */
function cloudRunIamProblems(e: z.infer<typeof envSchema>, backend: 'emulator' | 'cloud'): string[] {
  const problems: string[] = [];
  const refused = 'TASKS_AUTH=cloud-run-iam is refused';
  if (backend !== 'cloud') {
    problems.push(
      `${refused} with TASKS_BACKEND=${backend}: it trusts unsigned token claims, which only Cloud Run's IAM check makes safe; expected TASKS_AUTH=oidc`,
    );
  }
  // Cloud Run sets PORT, not HOST: the container listens on every interface and is reached only
  // through the front end. A chosen address means another network path, where nothing verified.
  if (e.HOST !== undefined && e.HOST !== '0.0.0.0') {
    problems.push(
      `${refused} with HOST=${JSON.stringify(e.HOST)}: on Cloud Run HOST is unset (0.0.0.0); expected no HOST, or TASKS_AUTH=oidc`,
    );
  }
  // The webhooks need --allow-unauthenticated, and then IAM lets any token through to /tasks/*.
  const webhooks = (['WHATSAPP_APP_SECRET', 'STRIPE_WEBHOOK_SECRET'] as const).filter((n) => e[n] !== undefined);
  if (webhooks.length > 0) {
    problems.push(
      `${refused} with ${webhooks.join(' and ')} set: webhooks need a public service, where IAM checks no token; expected the webhooks on a second service with TASKS_AUTH=oidc (docs/deploy.md)`,
    );
  }
  return problems;
}

function observabilityConfig(e: z.infer<typeof envSchema>, problems: string[]): ObservabilityConfig {
  const traceExporter = e.TRACE_EXPORTER ?? 'none';
  const metricsExporter = e.METRICS_EXPORTER ?? 'none';
  for (const [name, value] of [
    ['TRACE_EXPORTER', traceExporter],
    ['METRICS_EXPORTER', metricsExporter],
  ] as const) {
    if (value === 'otlp' && !e.OTEL_EXPORTER_OTLP_ENDPOINT) {
      problems.push(
        `OTEL_EXPORTER_OTLP_ENDPOINT is required when ${name}=otlp: expected the collector's OTLP/HTTP URL`,
      );
    }
  }
  return {
    serviceName: e.OTEL_SERVICE_NAME ?? e.K_SERVICE ?? 'backend',
    serviceVersion: e.K_REVISION ?? 'local',
    traceExporter,
    traceSampleRatio: e.TRACE_SAMPLE_RATIO ?? 1,
    metricsExporter,
    metricsHost: e.METRICS_HOST ?? '127.0.0.1',
    metricsPort: e.METRICS_PORT ?? 9464,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT?.replace(/\/+$/, ''),
    metricExportIntervalMs: e.OTEL_METRIC_EXPORT_INTERVAL ?? 60_000,
  };
}

/**
 * The database a command may open. In cloud mode an unset DATABASE_URL would mean an embedded
 * database in the container's own files: a service whose state dies with the instance, or a
 * migrate job that migrates nothing anyone reads. Commands that open the database refuse it (an
 * explicit memory:// stays allowed); those that do not (queues sync, schedules sync) run without one.
 */
export function databaseFor(config: Config): DatabaseConfig {
  if (config.tasks.backend === 'cloud' && config.database.kind === 'pglite' && config.database.dataDir !== null) {
    throw new ConfigError([
      'DATABASE_URL is required when TASKS_BACKEND=cloud: expected postgres://user:password@host:port/database (or ?host=/cloudsql/… for a socket)',
    ]);
  }
  return config.database;
}

/** Returns a copy of the config with some fields replaced, frozen again (tests, local secrets). */
export function withOverrides(config: Config, overrides: Partial<Config>): Config {
  return deepFreeze({ ...structuredClone(config), ...overrides });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
