// WhatsApp end to end inside the app: the webhook (handshake, signature, dedup, statuses), then
// whatsapp.process_message and whatsapp.send_message delivered as Cloud Tasks would, against a
// fake Graph API that speaks Meta's wire format.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { balanceOf, history } from '../../src/domains/credits/credits.service.ts';
import { parseWebhook, signWebhook, textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { WebhookIngestor } from '../../src/domains/whatsapp/webhook-ingestor.ts';
import { whatsappMessages } from '../../src/domains/whatsapp/whatsapp.repository.ts';
import { createTaskServices } from '../../src/task-services.ts';
import type { Enqueue } from '../../src/tasks/define-task.ts';
import { type FakeGraphApi, startFakeGraphApi } from '../helpers/fake-graph-api.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { statusesWebhook } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'meta-app-secret-for-tests';
const VERIFY_TOKEN = 'verify-me-please';
let seq = 0;
const wamid = () => `wamid.TEST${++seq}${Date.now().toString(36)}`;

describe(`WhatsApp webhook and tasks (${testDbKind})`, () => {
  let t: TestApp;
  let graph: FakeGraphApi;
  before(async () => {
    graph = await startFakeGraphApi();
    t = await buildTestApp({
      env: {
        WHATSAPP_APP_SECRET: APP_SECRET,
        WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
        WHATSAPP_ACCESS_TOKEN: graph.accessToken,
        WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
        WHATSAPP_API_BASE_URL: graph.baseUrl,
        SIGNUP_CREDITS: '5',
        STRIPE_PAYMENT_LINK_URL: 'https://buy.stripe.com/test_abc',
      },
    });
  });
  after(async () => {
    await t.close();
    await graph.close();
  });
  beforeEach(() => {
    t.enqueued.length = 0;
  });

  const post = (body: string, signature: string | null = signWebhook(body, APP_SECRET)) =>
    t.app.inject({
      method: 'POST',
      url: '/webhooks/whatsapp',
      headers: { 'content-type': 'application/json', ...(signature ? { 'x-hub-signature-256': signature } : {}) },
      payload: body,
    });
  const count = async (sql: string, values: unknown[] = []) =>
    Number((await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, values)).rows[0]!.n);
  /** Delivers what was enqueued, as Cloud Tasks would (X-Task-Key carries the producer's key). */
  const deliver = async () => {
    const results = [];
    for (const call of t.enqueued.splice(0)) {
      const key = call.options?.key;
      results.push({
        task: call.task,
        ...(await push(t.app, t.issuer, call.task, call.payload, { headers: key ? { 'x-task-key': key } : {} })),
      });
    }
    return results;
  };

  test('GET handshake echoes the challenge only for subscribe with the right token', async () => {
    const get = (q: string) => t.app.inject({ method: 'GET', url: `/webhooks/whatsapp?${q}` });
    const ok = await get(`hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=${VERIFY_TOKEN}`);
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.body, '1158201444');
    assert.match(String(ok.headers['content-type']), /^text\/plain/);
    for (const q of [
      'hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong',
      'hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me-please',
      'hub.mode=subscribe&hub.verify_token=verify-me-please',
      'hub.mode=subscribe&hub.challenge=1',
    ]) {
      const r = await get(q);
      assert.equal(r.statusCode, 403, q);
      assert.equal(r.json().error.code, 'FORBIDDEN');
    }
  });

  test('a signed message is recorded and one process task is enqueued; the same webhook again adds nothing', async () => {
    const id = wamid();
    const body = textWebhook([{ from: '15557654321', text: 'help', wamid: id }]);
    const first = await post(body);
    assert.equal(first.statusCode, 200);
    assert.deepEqual(
      t.enqueued.map((c) => [c.task, c.payload, Boolean(c.options?.tx)]),
      [['whatsapp.process_message', { wamid: id }, true]],
    );
    const again = await post(body);
    assert.equal(again.statusCode, 200);
    assert.equal(t.enqueued.length, 1, 'a redelivered webhook enqueues nothing');
    assert.equal(await count('whatsapp_messages WHERE wamid = $1', [id]), 1);
  });

  test('a missing, wrong or re-serialised signature is 403 and nothing is stored or enqueued', async () => {
    const id = wamid();
    const body = textWebhook([{ from: '15557654321', text: 'caf\u00e9 \u{1F600}', wamid: id }]);
    const escaped = body.replace('caf\u00e9', 'caf\\u00e9');
    const cases: Array<[string, string | null]> = [
      ['missing', null],
      ['other secret', signWebhook(body, 'another-secret')],
      ['not hex', 'sha256=xyz'],
      ['sha1', `sha1=${'0'.repeat(40)}`],
      ['signature of different bytes', signWebhook(escaped, APP_SECRET)],
    ];
    for (const [name, signature] of cases) {
      const r = await post(body, signature);
      assert.equal(r.statusCode, 403, name);
      assert.equal(r.json().error.code, 'FORBIDDEN');
    }
    assert.equal(t.enqueued.length, 0);
    assert.equal(await count('whatsapp_messages WHERE wamid = $1', [id]), 0);
    // The genuine signature over the very bytes (escapes included) is accepted.
    assert.equal((await post(escaped, signWebhook(escaped, APP_SECRET))).statusCode, 200);
  });

  test('malformed and oversized bodies are refused; payloads with nothing we handle are 200 and change nothing', async () => {
    const malformed = await post('{"object":');
    assert.equal(malformed.statusCode, 400);
    assert.equal(malformed.json().error.code, 'MALFORMED_JSON');
    const noEntry = await post(JSON.stringify({ object: 'whatsapp_business_account', entry: 'x' }));
    assert.equal(noEntry.statusCode, 400);
    assert.equal(noEntry.json().error.code, 'BAD_REQUEST');
    const badMessage = JSON.parse(textWebhook([{ from: '1555', text: 'x', wamid: wamid() }]));
    delete badMessage.entry[0].changes[0].value.messages[0].id;
    assert.equal((await post(JSON.stringify(badMessage))).statusCode, 400);

    const huge = 'x'.repeat(3 * 1024 * 1024 + 10);
    const big = await post(huge, signWebhook(huge, APP_SECRET));
    assert.equal(big.statusCode, 413);

    const other = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'account_update', value: { event: 'VERIFIED_ACCOUNT' } }] }],
      unknown: { fields: true },
    });
    const before = await count('whatsapp_messages');
    assert.equal((await post(other)).statusCode, 200);
    assert.equal((await post(JSON.stringify({ object: 'page', entry: [] }))).statusCode, 200);
    assert.equal(await count('whatsapp_messages'), before);
    assert.equal(t.enqueued.length, 0);
    assert.ok(t.logs.find('whatsapp webhook: nothing to handle').every((l) => l.severity === 'DEBUG'));
    assert.equal(t.logs.find('whatsapp webhook: nothing to handle').length, 2);
  });

  test('50 concurrent webhooks, duplicates among them: each message recorded and enqueued once, in a few shared transactions', async () => {
    let transactions = 0;
    const counting: Db = {
      ...t.db,
      transaction: (fn) => {
        transactions += 1;
        return t.db.transaction(fn);
      },
    };
    const enqueued: string[] = [];
    const enqueue: Enqueue = async (task, payload) => {
      enqueued.push(`${task} ${(payload as { wamid: string }).wamid}`);
      return { taskName: 't', created: true };
    };
    const ingestor = new WebhookIngestor(counting, enqueue);
    const ids = Array.from({ length: 40 }, () => wamid());
    const bodies = [...ids, ...ids.slice(0, 10)].map((id, i) =>
      parseWebhook(
        JSON.parse(
          textWebhook([{ from: `155500070${String(i % 7).padStart(2, '0')}`, text: `m ${id}\u0000`, wamid: id }]),
        ),
      ),
    );
    const outcomes = await Promise.all(bodies.map((b) => ingestor.ingest(b, new Date(t.clock.now()))));
    assert.equal(outcomes.flatMap((o) => o.accepted).length, 40);
    assert.equal(outcomes.flatMap((o) => o.duplicates).length, 10);
    assert.deepEqual(enqueued.sort(), ids.map((id) => `whatsapp.process_message ${id}`).sort());
    assert.ok(transactions <= 3, `${transactions} transactions for 50 webhooks`);
    const stored = await t.db.query<{ body: string }>('SELECT body FROM whatsapp_messages WHERE wamid = $1', [ids[0]]);
    assert.equal(stored.rows[0]!.body, `m ${ids[0]}\uFFFD`, 'U+0000 (which PostgreSQL text cannot hold) is replaced');
  });

  test('a webhook whose write fails does not fail the others sharing its transaction', async () => {
    const poison = wamid();
    const failing: Db = {
      ...t.db,
      transaction: (fn) =>
        t.db.transaction((tx) =>
          fn({
            ...tx,
            query: (text, values) =>
              values?.includes(poison) ? Promise.reject(new Error('the disk is full')) : tx.query(text, values),
          }),
        ),
    };
    const enqueue: Enqueue = async () => ({ taskName: 't', created: true });
    const ingestor = new WebhookIngestor(failing, enqueue);
    const ids = [wamid(), wamid(), poison, wamid()];
    const results = await Promise.allSettled(
      ids.map((id) =>
        ingestor.ingest(
          parseWebhook(JSON.parse(textWebhook([{ from: '15550008001', text: 'x', wamid: id }]))),
          new Date(),
        ),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(await count('whatsapp_messages WHERE wamid = ANY($1)', [ids]), 3);
  });

  test('first contact: an account with the sign-up grant, the message marked read, one reply with help', async () => {
    const id = wamid();
    const from = '15550001001';
    await post(textWebhook([{ from, text: 'HELP', wamid: id, name: 'Ana' }]));
    const [processed] = await deliver();
    assert.equal(processed!.outcome, 'succeeded', JSON.stringify(processed!.body));
    const replies = t.enqueued.filter((c) => c.task === 'whatsapp.send_message');
    assert.equal(replies.length, 1);
    const reply = replies[0]!.payload as { to: string; text: string; replyTo: string; accountId: number };
    assert.equal(reply.to, from);
    assert.equal(reply.replyTo, id);
    assert.match(reply.text, /Welcome! Your account is ready, with 5 free credits/);
    assert.match(reply.text, /balance: how many credits you have/);
    assert.equal(await balanceOf(t.db, reply.accountId), 5);
    assert.deepEqual(
      (await history(t.db, reply.accountId)).map((e) => [e.kind, e.amount]),
      [['signup_grant', 5]],
    );
    const read = graph.requests.find((r) => r.body.status === 'read' && r.body.message_id === id);
    assert.ok(read, 'the message was marked read');

    const sentBefore = graph.sent().length;
    const [send] = await deliver();
    assert.equal(send!.outcome, 'succeeded', JSON.stringify(send!.body));
    const sent = graph.sent().slice(sentBefore);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.authorization, `Bearer ${graph.accessToken}`);
    assert.deepEqual(sent[0]!.body.context, { message_id: id });
    assert.equal((sent[0]!.body.text as { body: string }).body, reply.text);
    const out = await t.db.query<{ status: string; wamid: string }>(
      `SELECT status, wamid FROM whatsapp_messages WHERE direction = 'out' AND send_key = $1`,
      [`reply:${id}`],
    );
    assert.equal(out.rows[0]!.status, 'accepted');
    assert.match(out.rows[0]!.wamid, /^wamid\.FAKE/);

    // The second message of the same person: no new account, no second grant.
    await post(textWebhook([{ from, text: 'balance', wamid: wamid() }]));
    await deliver();
    const second = t.enqueued.find((c) => c.task === 'whatsapp.send_message')!.payload as { text: string };
    assert.equal(second.text, 'You have 5 credits.');
    assert.equal(await count('whatsapp_contacts WHERE phone = $1', [from]), 1);
    assert.equal(await count('credit_ledger WHERE account_id = $1', [reply.accountId]), 1);
  });

  test('a business-scoped user id later seen with the phone joins the same account', async () => {
    const phone = '15550001777';
    await post(textWebhook([{ from: phone, text: 'hi', wamid: wamid() }]));
    await deliver();
    const bsuidBody = JSON.parse(textWebhook([{ from: phone, text: 'balance', wamid: wamid() }]));
    bsuidBody.entry[0].changes[0].value.contacts[0].user_id = 'US.13491208655302741918';
    await post(JSON.stringify(bsuidBody));
    await deliver();
    const row = await t.db.query<{ phone: string; bsuid: string }>(
      'SELECT phone, bsuid FROM whatsapp_contacts WHERE phone = $1',
      [phone],
    );
    assert.deepEqual(row.rows, [{ phone, bsuid: 'US.13491208655302741918' }]);
    // Now the phone number is withheld: the BSUID alone finds the same account.
    const noPhone = JSON.parse(textWebhook([{ from: phone, text: 'balance', wamid: wamid() }]));
    const value = noPhone.entry[0].changes[0].value;
    delete value.messages[0].from;
    value.messages[0].from_user_id = 'US.13491208655302741918';
    value.contacts = [{ profile: { name: 'Ana' }, user_id: 'US.13491208655302741918' }];
    assert.equal((await post(JSON.stringify(noPhone))).statusCode, 200);
    const [processed] = await deliver();
    assert.equal(processed!.outcome, 'succeeded', JSON.stringify(processed!.body));
    assert.equal(await count('whatsapp_contacts WHERE bsuid = $1', ['US.13491208655302741918']), 1);
    const reply = t.enqueued.at(-1)!.payload as { to: string };
    assert.equal(reply.to, 'US.13491208655302741918');
  });

  test('three messages from two senders: three replies, each to its sender', async () => {
    const ids = [wamid(), wamid(), wamid()];
    await post(
      textWebhook([
        { from: '15550002001', text: 'balance', wamid: ids[0]! },
        { from: '15550002002', text: 'topup', wamid: ids[1]! },
        { from: '15550002001', text: 'what?', wamid: ids[2]! },
      ]),
    );
    assert.equal(t.enqueued.length, 3);
    await deliver();
    const replies = t.enqueued.map((c) => c.payload as { to: string; replyTo: string; text: string });
    assert.deepEqual(
      replies.map((r) => [r.to, r.replyTo]),
      [
        ['15550002001', ids[0]],
        ['15550002002', ids[1]],
        ['15550002001', ids[2]],
      ],
    );
    assert.match(replies[1]!.text, /https:\/\/buy\.stripe\.com\/test_abc\?client_reference_id=\d+/);
    assert.match(replies[2]!.text, /Sorry, I didn't understand that/);
  });

  test('media and unknown types get a polite reply', async () => {
    const body = JSON.parse(textWebhook([{ from: '15550003001', text: 'x', wamid: wamid() }]));
    const m = body.entry[0].changes[0].value.messages[0];
    delete m.text;
    m.type = 'image';
    m.image = { id: '123', mime_type: 'image/jpeg', sha256: 'abc' };
    await post(JSON.stringify(body));
    await deliver();
    assert.match((t.enqueued[0]!.payload as { text: string }).text, /can't read pictures yet/);
  });

  test('a system message (the user changed number) moves the contact to the new number and gets no reply', async () => {
    const oldPhone = '15550003101';
    const newPhone = '15550003102';
    await post(textWebhook([{ from: oldPhone, text: 'hi', wamid: wamid() }]));
    await deliver();
    t.enqueued.length = 0;
    const body = JSON.parse(textWebhook([{ from: oldPhone, text: 'x', wamid: wamid() }]));
    const value = body.entry[0].changes[0].value;
    delete value.contacts;
    const m = value.messages[0];
    delete m.text;
    m.type = 'system';
    m.system = { body: 'User A changed from 15550003101 to 15550003102', wa_id: newPhone, type: 'user_changed_number' };
    assert.equal((await post(JSON.stringify(body))).statusCode, 200);
    const [processed] = await deliver();
    assert.equal(processed!.outcome, 'succeeded', JSON.stringify(processed!.body));
    assert.equal(t.enqueued.length, 0, 'no reply to a system message');
    assert.equal(await count('whatsapp_contacts WHERE phone = $1', [newPhone]), 1);
    assert.equal(await count('whatsapp_contacts WHERE phone = $1', [oldPhone]), 0);
  });

  test('Graph API 131056 asks for a retry after a delay; 131047 is dead with the reason', async () => {
    graph.script({ code: 131056 });
    const key = `test:${wamid()}`;
    const payload = { to: '15550004001', text: 'hello' };
    const sentBefore = graph.sent().length;
    const first = await push(t.app, t.issuer, 'whatsapp.send_message', payload, { headers: { 'x-task-key': key } });
    assert.equal(first.status, 503);
    assert.equal(first.response.headers['retry-after'], '4');
    assert.equal(first.body.error.code, 'TASK_RETRY_LATER');
    const second = await push(t.app, t.issuer, 'whatsapp.send_message', payload, {
      headers: { 'x-task-key': key },
      retryCount: 1,
    });
    assert.equal(second.outcome, 'succeeded');
    const third = await push(t.app, t.issuer, 'whatsapp.send_message', payload, {
      headers: { 'x-task-key': key },
      retryCount: 2,
    });
    assert.equal(third.outcome, 'duplicate');
    assert.equal(graph.sent().length - sentBefore, 2, 'one refused attempt, one send');

    graph.script({ code: 131047, details: 'more than 24 hours have passed' });
    const deadKey = `test:${wamid()}`;
    const dead = await push(t.app, t.issuer, 'whatsapp.send_message', payload, { headers: { 'x-task-key': deadKey } });
    assert.equal(dead.outcome, 'dead');
    const run = await t.db.query<{ status: string; last_error: string }>(
      'SELECT status, last_error FROM task_runs WHERE idempotency_key = $1',
      [deadKey],
    );
    assert.equal(run.rows[0]!.status, 'dead');
    assert.match(run.rows[0]!.last_error, /131047.*24 hours/);
    const row = await t.db.query<{ status: string }>('SELECT status FROM whatsapp_messages WHERE send_key = $1', [
      deadKey,
    ]);
    assert.equal(row.rows[0]!.status, 'failed');
  });

  test('5xx and dropped connections retry; a bad token is dead', async () => {
    const payload = { to: '15550004002', text: 'hello' };
    graph.script({ code: 2, httpStatus: 503 }, { drop: true });
    const key = `test:${wamid()}`;
    for (const retryCount of [0, 1]) {
      const r = await push(t.app, t.issuer, 'whatsapp.send_message', payload, {
        headers: { 'x-task-key': key },
        retryCount,
      });
      assert.equal(r.status, 500, JSON.stringify(r.body));
    }
    const ok = await push(t.app, t.issuer, 'whatsapp.send_message', payload, {
      headers: { 'x-task-key': key },
      retryCount: 2,
    });
    assert.equal(ok.outcome, 'succeeded');
    graph.script({ code: 190 });
    const dead = await push(t.app, t.issuer, 'whatsapp.send_message', payload, {
      headers: { 'x-task-key': `test:${wamid()}` },
    });
    assert.equal(dead.outcome, 'dead');
  });

  test('statuses in any order move our message forward only, even when they arrive before the send is stored', async () => {
    const key = `test:${wamid()}`;
    await push(
      t.app,
      t.issuer,
      'whatsapp.send_message',
      { to: '15550005001', text: 'hi' },
      {
        headers: { 'x-task-key': key },
      },
    );
    const { wamid: sentId } = (
      await t.db.query<{ wamid: string }>('SELECT wamid FROM whatsapp_messages WHERE send_key = $1', [key])
    ).rows[0]!;
    const statuses = (list: Array<{ status: string; errors?: unknown[] }>, id = sentId) =>
      JSON.stringify(
        statusesWebhook(
          list.map((s) => ({
            id,
            recipient_id: '15550005001',
            timestamp: '1793836809',
            pricing: { billable: false, pricing_model: 'PMP', category: 'service' },
            ...s,
          })),
          graph.phoneNumberId,
        ),
      );
    const statusOf = async (k: string) =>
      (await t.db.query<{ status: string }>('SELECT status FROM whatsapp_messages WHERE send_key = $1', [k])).rows[0]!
        .status;
    assert.equal((await post(statuses([{ status: 'read' }]))).statusCode, 200);
    assert.equal(await statusOf(key), 'read');
    await post(statuses([{ status: 'delivered' }, { status: 'sent' }]));
    assert.equal(await statusOf(key), 'read', 'never downgraded');
    await post(statuses([{ status: 'read' }]));
    assert.equal(await count('whatsapp_statuses WHERE wamid = $1', [sentId]), 3);

    // A status for a wamid we have not stored yet: kept, and applied when the send stores it.
    graph.script('ok');
    const early = `wamid.FAKEearly${seq++}`;
    await post(statuses([{ status: 'delivered' }], early));
    await post(statuses([{ status: 'failed', errors: [{ code: 131026, title: 'Message undeliverable' }] }], sentId));
    assert.equal(await statusOf(key), 'failed');
    const lines = await whatsappMessages.recent(t.db, { user: '15550005001', limit: 5 });
    assert.equal(lines[0]!.status, 'failed');
    assert.deepEqual(lines[0]!.error, [{ code: 131026, title: 'Message undeliverable' }]);
  });

  test('without an access token replies go to the offline outbox, once', async () => {
    const offline = await buildTestApp({ env: { WHATSAPP_APP_SECRET: APP_SECRET }, db: t.db });
    try {
      assert.equal(createTaskServices(offline.config).whatsapp.api, undefined);
      const key = `test:${wamid()}`;
      const payload = { to: '15550006001', text: 'offline hello' };
      const sentBefore = graph.sent().length;
      const r = await push(offline.app, offline.issuer, 'whatsapp.send_message', payload, {
        headers: { 'x-task-key': key },
      });
      assert.equal(r.outcome, 'succeeded');
      assert.equal(graph.sent().length, sentBefore);
      const row = await t.db.query<{ status: string; body: string }>(
        'SELECT status, body FROM whatsapp_messages WHERE send_key = $1',
        [key],
      );
      assert.deepEqual(row.rows, [{ status: 'offline', body: 'offline hello' }]);
      assert.equal(offline.logs.find(/offline outbox: reply to 15550006001/).length, 1);
    } finally {
      await offline.app.close();
      await offline.issuer.close();
    }
  });
});
