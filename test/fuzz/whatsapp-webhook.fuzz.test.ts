// Property-based fuzzing of POST /webhooks/whatsapp (and the GET handshake): whatever the bytes
// and headers, never a 5xx; a refused request (403 bad signature, 400 malformed, 413 too large)
// changes no table and enqueues nothing; a signed body of any shape is 200 or 400.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { signWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { anyJson, fingerprint, headerValue, malformedJson, nastyString, params } from './fuzz.ts';

const APP_SECRET = 'meta-app-secret-for-fuzzing';
const VERIFY_TOKEN = 'verify-token-for-fuzzing';

/** Something shaped like Meta's envelope, with every leaf free to be wrong. */
const leaf = fc.oneof(nastyString, anyJson);
const digits = fc.stringMatching(/^\d{1,15}$/);
/** Mostly the well-formed value, sometimes anything: deep enough fields still reach the database. */
const mostly = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 30, arbitrary: valid as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: leaf });
const message = fc.record(
  {
    id: fc.oneof(
      nastyString,
      fc.string({ minLength: 1, maxLength: 30 }).map((s) => `wamid.${s}`),
    ),
    from: mostly(digits),
    from_user_id: mostly(nastyString),
    timestamp: mostly(fc.stringMatching(/^\d{1,12}$/)),
    type: mostly(fc.constantFrom('text', 'interactive', 'button', 'image', 'video', 'document', 'sticker')),
    text: mostly(fc.record({ body: nastyString })),
    interactive: mostly(
      fc.record({ type: fc.constantFrom('button_reply', 'list_reply'), button_reply: fc.record({ title: leaf }) }),
    ),
    button: mostly(fc.record({ text: leaf })),
    image: mostly(fc.record({ caption: leaf })),
  },
  { requiredKeys: ['id', 'type', 'from'] },
);
const status = fc.record(
  {
    id: fc.oneof(nastyString, fc.constant('wamid.known')),
    status: mostly(fc.constantFrom('sent', 'delivered', 'read', 'failed')),
    timestamp: mostly(fc.stringMatching(/^\d{1,12}$/)),
    recipient_id: mostly(digits),
    errors: mostly(fc.array(anyJson, { maxLength: 2 })),
  },
  { requiredKeys: ['id', 'status'] },
);
const contact = fc.record(
  {
    wa_id: mostly(digits),
    user_id: mostly(nastyString),
    profile: mostly(fc.record({ name: mostly(nastyString), username: mostly(nastyString) }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);
const value = fc.record(
  {
    metadata: mostly(fc.record({ phone_number_id: mostly(digits) })),
    contacts: mostly(fc.array(contact, { maxLength: 3 })),
    messages: mostly(fc.array(message, { minLength: 1, maxLength: 3 })),
    statuses: mostly(fc.array(status, { maxLength: 3 })),
  },
  { requiredKeys: [] },
);
const change = fc.record({ field: mostly(fc.constant('messages')), value: mostly(value) });
const entry = fc.record(
  { id: mostly(digits), changes: mostly(fc.array(change, { minLength: 1, maxLength: 3 })) },
  { requiredKeys: ['changes'] },
);
const envelope = fc.record({
  object: mostly(fc.constant('whatsapp_business_account')),
  entry: mostly(fc.array(entry, { minLength: 1, maxLength: 2 })),
});

describe(`fuzz: WhatsApp webhook (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ env: { WHATSAPP_APP_SECRET: APP_SECRET, WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN } });
  });
  after(async () => {
    await t.close();
  });

  const post = (payload: string | Buffer, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: '/webhooks/whatsapp', headers, payload });

  /** The request is refused with `expected` and nothing changed. */
  async function assertRefused(send: () => ReturnType<typeof post>, expected: number[]) {
    const before = await fingerprint(t.db);
    const enqueued = t.enqueued.length;
    const r = await send();
    assert.ok(expected.includes(r.statusCode), `status ${r.statusCode}: ${r.body.slice(0, 300)}`);
    assert.deepEqual(await fingerprint(t.db), before, 'a refused webhook changed the database');
    assert.equal(t.enqueued.length, enqueued, 'a refused webhook enqueued a task');
  }

  test('a missing, malformed or wrong X-Hub-Signature-256 is 403 and changes nothing, whatever the body', async () => {
    const signature = fc.oneof(
      fc.constant(undefined),
      headerValue,
      fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256=${h}`),
      fc.stringMatching(/^[0-9A-F]{64}$/).map((h) => ` sha256=${h} `),
      fc.constantFrom('sha256=', 'sha1=abc', signWebhook('{}', APP_SECRET), signWebhook('x', 'wrong-secret')),
    );
    const body = fc.oneof(
      envelope.map((e) => JSON.stringify(e)),
      malformedJson(fc.json()),
    );
    const contentType = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', '');
    await fc.assert(
      fc.asyncProperty(body, signature, contentType, async (payload, sig, type) => {
        fc.pre(sig === undefined || sig !== signWebhook(payload, APP_SECRET));
        const headers: Record<string, string> = {
          ...(type ? { 'content-type': type } : {}),
          ...(sig === undefined ? {} : { 'x-hub-signature-256': sig }),
        };
        await assertRefused(() => post(payload, headers), [403]);
      }),
      params(100),
    );
  });

  test('a signed body that is not JSON is 400 and changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(malformedJson(fc.json()), async (payload) => {
        let isJson = true;
        try {
          JSON.parse(payload);
        } catch {
          isJson = false;
        }
        fc.pre(!isJson);
        await assertRefused(
          () =>
            post(payload, {
              'content-type': 'application/json',
              'x-hub-signature-256': signWebhook(payload, APP_SECRET),
            }),
          [400],
        );
      }),
      params(80),
    );
  });

  test('a signed JSON body of any shape is 200 or 400, never a 5xx; a 400 changes nothing', async () => {
    let stored = 0;
    const body = fc
      .oneof({ weight: 3, arbitrary: envelope }, { weight: 1, arbitrary: anyJson })
      .map((v) => JSON.stringify(v));
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        const before = await fingerprint(t.db);
        const enqueued = t.enqueued.length;
        const r = await post(payload, {
          'content-type': 'application/json',
          'x-hub-signature-256': signWebhook(payload, APP_SECRET),
        });
        assert.ok(r.statusCode === 200 || r.statusCode === 400, `status ${r.statusCode}: ${r.body.slice(0, 300)}`);
        const changed = JSON.stringify(await fingerprint(t.db)) !== JSON.stringify(before);
        if (r.statusCode === 400) {
          assert.ok(!changed, 'a refused webhook changed the database');
          assert.equal(t.enqueued.length, enqueued, 'a refused webhook enqueued a task');
        }
        if (changed) stored++;
      }),
      params(150),
    );
    // The generator must reach the ingestion, not only the schema's refusals.
    assert.ok(stored > 0, 'no generated webhook was stored');
  });

  test('a body over 3 MiB is 413 and changes nothing, signed or not', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4096 }), fc.boolean(), async (extra, signed) => {
        const payload = Buffer.alloc(3 * 1024 * 1024 + extra, 0x20);
        const headers: Record<string, string> = {
          'content-type': 'application/json',
          ...(signed ? { 'x-hub-signature-256': signWebhook(payload, APP_SECRET) } : {}),
        };
        await assertRefused(() => post(payload, headers), [413]);
      }),
      params(5),
    );
  });

  test('the GET handshake answers 200 with the challenge or 403, never anything else', async () => {
    const param = fc.oneof(nastyString, fc.constant(VERIFY_TOKEN), fc.constant('subscribe'));
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom('hub.mode', 'hub.verify_token', 'hub.challenge', 'other'), param, {
          maxKeys: 4,
        }),
        async (query) => {
          const before = await fingerprint(t.db);
          const r = await t.app.inject({ method: 'GET', url: '/webhooks/whatsapp', query });
          assert.ok(r.statusCode === 200 || r.statusCode === 403, `status ${r.statusCode}`);
          if (r.statusCode === 200) assert.equal(r.body, query['hub.challenge']);
          assert.deepEqual(await fingerprint(t.db), before);
        },
      ),
      params(80),
    );
  });
});
