// Property-based fuzzing of the inputs that are not requests: configuration from random
// environments (only ConfigError, one line per problem, and secrets never shown), and any HTML for
// the extractor (an article or ExtractionError, never another exception).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, loadConfig, SECRET_VARIABLES } from '../../src/config.ts';
import { ExtractionError, extractArticle } from '../../src/domains/scraper/extract.ts';
import { nastyString, params } from './fuzz.ts';

/** Every variable the schema reads, and a few it does not. */
const NAMES = [
  ...'PORT HOST PUBLIC_BASE_URL TASKS_PUSH_BASE_URL DATA_DIR DATABASE_URL TASKS_BACKEND CLOUD_TASKS_EMULATOR_HOST GCP_PROJECT_ID GOOGLE_CLOUD_PROJECT GCP_LOCATION TASKS_INVOKER_SERVICE_ACCOUNT TASKS_OIDC_AUDIENCE TASKS_AUTH WHATSAPP_VERIFY_TOKEN WHATSAPP_PHONE_NUMBER_ID WHATSAPP_API_BASE_URL LLM_BASE_URL LLM_MODEL STRIPE_PAYMENT_LINK_URL STRIPE_API_BASE_URL OAUTH_ISSUER_URL OAUTH_CLIENT_ID ADMIN_EMAILS SCRAPER_ALLOW_PRIVATE_NETWORKS LOG_LEVEL LOG_FORMAT TASK_RUN_RETENTION_DAYS SIGNUP_CREDITS MONTHLY_GRANT_BATCH_SIZE POST_COST_CREDITS EMULATOR_GRPC_PORT EMULATOR_HTTP_PORT TASKS_OIDC_ISSUER SHUTDOWN_TIMEOUT_MS TRACE_EXPORTER TRACE_SAMPLE_RATIO METRICS_EXPORTER METRICS_HOST METRICS_PORT OTEL_EXPORTER_OTLP_ENDPOINT OTEL_METRIC_EXPORT_INTERVAL OTEL_SERVICE_NAME K_SERVICE K_REVISION SHED_EVENT_LOOP_LAG_MS SHED_DB_WAITING'.split(
    ' ',
  ),
  ...SECRET_VARIABLES,
  'PATH',
  'NODE_ENV',
  '__proto__',
];

/** Values near what each kind of variable wants, and far from it. */
const value = fc.oneof(
  nastyString,
  fc.constantFrom(
    'cloud',
    'emulator',
    'oidc',
    'secret',
    'oidc-or-secret',
    'cloud-run-iam',
    'otlp',
    'prometheus',
    'true',
    '0',
    '65536',
    '8080',
    'memory://',
    'postgres://u:p@h/db',
    'https://svc.example.run.app',
    'http://127.0.0.1:4318/',
    'https://a.example/path?q#f',
    'whsec_x',
    'sk_test_abc',
    'a@b.example, ,c@d.example',
    'x'.repeat(32),
    '0.5',
    '1.0000',
    '127.0.0.1:8123',
  ),
  fc.webUrl(),
  fc.nat().map(String),
);

describe('fuzz: configuration and HTML', () => {
  test('loadConfig on any environment: a frozen Config or a ConfigError of one-line issues, secrets hidden', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...NAMES), value, { maxKeys: 12 }), (env) => {
        let config: ReturnType<typeof loadConfig>;
        try {
          config = loadConfig(env);
        } catch (err) {
          assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error)?.stack ?? String(err)}`);
          assert.ok(err.issues.length > 0);
          for (const issue of err.issues) {
            assert.ok(!/[\r\n]/.test(issue), `an issue spans lines: ${JSON.stringify(issue)}`);
            assert.match(issue, /^[A-Z][A-Z0-9_]*[ =]/, `an issue names no variable: ${issue}`);
            for (const name of SECRET_VARIABLES) {
              if (issue.startsWith(`${name}=`)) assert.ok(issue.startsWith(`${name}=(value hidden) `), issue);
            }
          }
          return;
        }
        assert.ok(Object.isFrozen(config) && Object.isFrozen(config.tasks));
        assert.ok(Number.isInteger(config.port) && config.port >= 1 && config.port <= 65535);
      }),
      params(1000),
    );
  });

  const tag = fc.constantFrom(
    'p',
    'div',
    'article',
    'script',
    'style',
    'h1',
    'li',
    'ul',
    'table',
    'tr',
    'td',
    'nav',
    'svg',
    'template',
    'html',
    'body',
    'head',
    'title',
    'meta',
    'a',
    'br',
    'pre',
    'iframe',
    'noscript',
    'x-y',
  );
  const attr = fc
    .tuple(
      fc.constantFrom('class', 'id', 'lang', 'content', 'name', 'property', 'href', 'aria-hidden', 'role', 'style'),
      nastyString,
    )
    .map(([k, v]) => ` ${k}="${v.replaceAll('"', '&quot;')}"`);
  const html = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      nastyString,
      fc.constantFrom(
        '&amp;',
        '&#0;',
        '&#xD800;',
        '&nbsp;',
        '<!--',
        '-->',
        '<![CDATA[',
        ']]>',
        '<!doctype html>',
        '</',
        '<',
        '>',
        '\u0000',
      ),
      fc
        .tuple(tag, fc.array(attr, { maxLength: 3 }), fc.array(tie('node'), { maxLength: 4 }), fc.boolean())
        .map(([t, attrs, children, close]) => `<${t}${attrs.join('')}>${children.join('')}${close ? `</${t}>` : ''}`),
    ),
  })).node as fc.Arbitrary<string>;

  test('extractArticle on any string: an article or ExtractionError, never another exception', () => {
    fc.assert(
      fc.property(
        fc.oneof(html, fc.string({ unit: 'binary', maxLength: 500 }), fc.string({ maxLength: 500 })),
        (page) => {
          try {
            const a = extractArticle(page, 'https://example.com/page');
            assert.ok(a.text.length > 0);
            assert.ok(!a.text.includes('\u0000') && !a.title.includes('\u0000'), 'U+0000 in the article');
            assert.ok(Number.isInteger(a.wordCount) && a.wordCount >= 0);
          } catch (err) {
            assert.ok(
              err instanceof ExtractionError,
              `not an ExtractionError: ${(err as Error)?.stack ?? String(err)}`,
            );
          }
        },
      ),
      params(300),
    );
  });
});
