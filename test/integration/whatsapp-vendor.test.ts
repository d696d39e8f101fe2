// WhatsApp traffic in the shapes Meta documents for 2026: users known only by a business-scoped
// user id (BSUID), users whose ids change, and the message types besides text (reactions,
// request_welcome, button and list replies, captioned media). Webhooks go into the app; the tasks
// they cause are delivered as Cloud Tasks would; replies reach a fake Graph API that reads `to`
// and `recipient` as Meta does.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { balanceOf, history, topUp } from '../../src/domains/credits/credits.service.ts';
import { type FakeGraphApi, startFakeGraphApi } from '../helpers/fake-graph-api.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import {
  inboundWebhook,
  newWamid,
  PHONE_NUMBER_ID,
  signedWebhookHeaders,
  text,
  userIdChangedWebhook,
  type WhatsAppUser,
} from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'meta-app-secret-for-vendor-tests';
const wamid = () => newWamid('VENDOR');

describe(`WhatsApp vendor traffic: BSUIDs, id changes, message types (${testDbKind})`, () => {
  let t: TestApp;
  let graph: FakeGraphApi;
  before(async () => {
    graph = await startFakeGraphApi({ phoneNumberId: PHONE_NUMBER_ID });
    t = await buildTestApp({
      env: {
        WHATSAPP_APP_SECRET: APP_SECRET,
        WHATSAPP_VERIFY_TOKEN: 'verify',
        WHATSAPP_ACCESS_TOKEN: graph.accessToken,
        WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
        WHATSAPP_API_BASE_URL: graph.baseUrl,
        SIGNUP_CREDITS: '5',
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

  const post = async (body: string) => {
    const r = await t.app.inject({
      method: 'POST',
      url: '/webhooks/whatsapp',
      headers: signedWebhookHeaders(body, APP_SECRET),
      payload: body,
    });
    assert.equal(r.statusCode, 200, r.body);
  };
  /** Delivers what was enqueued (of these tasks, if given), as Cloud Tasks would. */
  const deliver = async (tasks?: string[]) => {
    const calls = t.enqueued.filter((c) => !tasks || tasks.includes(c.task));
    for (const c of calls) t.enqueued.splice(t.enqueued.indexOf(c), 1);
    const results = [];
    for (const call of calls) {
      const key = call.options?.key;
      const r = await push(t.app, t.issuer, call.task, call.payload, { headers: key ? { 'x-task-key': key } : {} });
      assert.notEqual(r.status, 500, `${call.task}: ${JSON.stringify(r.body)}`);
      results.push({ task: call.task, payload: call.payload, ...r });
    }
    return results;
  };
  /** Posts one webhook, runs its process_message and the sends it enqueues; returns what reached the Graph API. */
  const converse = async (message: { id: string; body: string }) => {
    const before = graph.sent().length;
    await post(message.body);
    const [processed] = await deliver(['whatsapp.process_message']);
    assert.equal(processed!.outcome, 'succeeded', JSON.stringify(processed!.body));
    const sends = await deliver(['whatsapp.send_message']);
    return { processed: processed!, sends, sent: graph.sent().slice(before) };
  };
  const textOf = (r: { body: Record<string, unknown> }) => (r.body.text as { body: string }).body;
  const count = async (sql: string, values: unknown[] = []) =>
    Number((await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, values)).rows[0]!.n);
  const accountOf = async (id: string) =>
    Number(
      (
        await t.db.query<{ account_id: string }>(
          'SELECT account_id FROM whatsapp_contacts WHERE phone = $1 OR bsuid = $1',
          [id],
        )
      ).rows[0]?.account_id ?? Number.NaN,
    );
  const markedRead = (id: string) => graph.requests.some((r) => r.body.status === 'read' && r.body.message_id === id);

  test('a user known only by BSUID is answered through `recipient`, never `to`; once their phone shows up, through `to`', async () => {
    const user: WhatsAppUser = { bsuid: 'US.13491208655302741918', username: '@ana.tides', name: 'Ana' };
    const first = inboundWebhook(user, text('help'));
    const { sent } = await converse(first);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.body.recipient, user.bsuid);
    assert.equal(sent[0]!.body.to, undefined, 'a BSUID is never sent in `to`');
    assert.equal(sent[0]!.body.recipient_type, 'individual');
    assert.deepEqual(sent[0]!.body.context, { message_id: first.id });
    assert.match(textOf(sent[0]!), /Welcome! Your account is ready, with 5 free credits/);
    assert.ok(markedRead(first.id));
    const out = await t.db.query<{ status: string; wa_user: string }>(
      `SELECT status, wa_user FROM whatsapp_messages WHERE send_key = $1`,
      [`reply:${first.id}`],
    );
    assert.deepEqual(out.rows, [{ status: 'accepted', wa_user: user.bsuid }]);
    const contact = await t.db.query('SELECT phone, bsuid, username FROM whatsapp_contacts WHERE bsuid = $1', [
      user.bsuid,
    ]);
    assert.deepEqual(contact.rows, [{ phone: null, bsuid: user.bsuid, username: '@ana.tides' }]);
    const account = await accountOf(user.bsuid);

    // Later one message carries both the BSUID and the phone number: the same contact gains the phone.
    const withPhone = { ...user, phone: '15550007001' };
    const second = await converse(inboundWebhook(withPhone, text('balance')));
    assert.equal(await count('whatsapp_contacts WHERE bsuid = $1 OR phone = $2', [user.bsuid, withPhone.phone]), 1);
    assert.equal(await accountOf(withPhone.phone), account);
    assert.equal(textOf(second.sent[0]!), 'You have 5 credits.');
    assert.equal(second.sent[0]!.body.to, withPhone.phone, 'the phone number once known');
    assert.equal(second.sent[0]!.body.recipient, undefined);
    assert.deepEqual(
      (await history(t.db, account)).map((e) => e.kind),
      ['signup_grant'],
    );
  });

  test('after `user_changed_user_id` the next message from the new BSUID reaches the same account: same balance, no second grant', async () => {
    const oldId = 'BR.90817263544536271809';
    const newId = 'BR.11223344556677889900';
    await converse(inboundWebhook({ bsuid: oldId, name: 'Bea' }, text('hi')));
    const account = await accountOf(oldId);
    await topUp(t.db, { accountId: account, credits: 20, key: `test:topup:${account}`, sourceRef: 'cs_test_vendor' });
    assert.equal(await balanceOf(t.db, account), 25);
    // A reply queued before the change, delivered after it: it follows the user to the new id.
    const queued = { to: oldId, text: 'queued before the change' };

    // Meta's system message: no contacts array; the old BSUID on the message, the new one in `system`.
    const system = userIdChangedWebhook({ from: oldId, to: newId, name: 'Bea' });
    const systemId = system.id;
    const changed = await converse(system);
    assert.equal(changed.sends.length, 0, 'no reply to a system message');
    assert.equal(markedRead(systemId), false, 'a system message is not marked read');
    assert.equal(await accountOf(newId), account, 'the contact moved to the new BSUID');

    const accountsBefore = await count('accounts');
    const next = await converse(inboundWebhook({ bsuid: newId, name: 'Bea' }, text('balance')));
    assert.equal(await count('accounts'), accountsBefore, 'no second account');
    assert.equal(await accountOf(newId), account);
    assert.equal(textOf(next.sent[0]!), 'You have 25 credits.');
    assert.equal(next.sent[0]!.body.recipient, newId);
    assert.deepEqual(
      (await history(t.db, account)).map((e) => [e.kind, e.amount]).sort(),
      [
        ['signup_grant', 5],
        ['topup', 20],
      ],
      'one sign-up grant only',
    );
    assert.equal(await count('whatsapp_contacts WHERE bsuid = $1', [oldId]), 0);

    // A late webhook from the old BSUID still reaches the same account, and the ids stay as they are.
    const late = await converse(inboundWebhook({ bsuid: oldId, name: 'Bea' }, text('balance')));
    assert.equal(textOf(late.sent[0]!), 'You have 25 credits.');
    assert.equal(late.sent[0]!.body.recipient, newId);
    assert.equal(await accountOf(newId), account);
    assert.equal(await count('accounts'), accountsBefore);

    const before = graph.sent().length;
    const r = await push(t.app, t.issuer, 'whatsapp.send_message', queued, {
      headers: { 'x-task-key': `test:${wamid()}` },
    });
    assert.equal(r.outcome, 'succeeded', JSON.stringify(r.body));
    assert.equal(graph.sent()[before]!.body.recipient, newId);
  });

  test('Graph API 131062 (a BSUID recipient is not supported for this message) is dead with its reason', async () => {
    const bsuid = 'DE.55501234987612340001';
    graph.script({ code: 131062, details: 'Business-scoped User ID recipients are not supported for this message.' });
    const hello = inboundWebhook({ bsuid }, text('hello'));
    await post(hello.body);
    await deliver(['whatsapp.process_message']);
    const [send] = await deliver(['whatsapp.send_message']);
    assert.equal(send!.outcome, 'dead', JSON.stringify(send!.body));
    const run = await t.db.query<{ status: string; last_error: string }>(
      `SELECT status, last_error FROM task_runs WHERE task = 'whatsapp.send_message' AND idempotency_key = $1`,
      [`reply:${hello.id}`],
    );
    assert.equal(run.rows[0]!.status, 'dead');
    assert.match(run.rows[0]!.last_error, /131062.*business-scoped user id recipients are not supported/i);
    const row = await t.db.query<{ status: string; error: { code: number } }>(
      `SELECT status, error FROM whatsapp_messages WHERE direction = 'out' AND wa_user = $1`,
      [bsuid],
    );
    assert.equal(row.rows[0]!.status, 'failed');
    assert.equal(row.rows[0]!.error.code, 131062);
  });

  test('a reaction and its removal send nothing and are not marked read', async () => {
    const user: WhatsAppUser = { phone: '15550007101', bsuid: 'US.70000000000000007101' };
    const hello = inboundWebhook(user, text('hi'));
    await converse(hello);
    const { wamid: ourReply } = (
      await t.db.query<{ wamid: string }>('SELECT wamid FROM whatsapp_messages WHERE send_key = $1', [
        `reply:${hello.id}`,
      ])
    ).rows[0]!;
    const reacted = inboundWebhook(user, { type: 'reaction', reaction: { message_id: ourReply, emoji: '\u{1F44D}' } });
    const removed = inboundWebhook(user, { type: 'reaction', reaction: { message_id: ourReply } });
    for (const m of [reacted, removed]) {
      const { sends, sent } = await converse(m);
      assert.equal(sends.length, 0);
      assert.equal(sent.length, 0);
      assert.equal(markedRead(m.id), false);
      assert.equal(await count(`whatsapp_messages WHERE wamid = $1 AND status = 'processed'`, [m.id]), 1);
    }
    // From somebody we never met: nothing either, and no account.
    const accounts = await count('accounts');
    const stranger = await converse(
      inboundWebhook(
        { bsuid: 'US.70000000000000007199' },
        { type: 'reaction', reaction: { message_id: ourReply, emoji: 'x' } },
      ),
    );
    assert.equal(stranger.sent.length, 0);
    assert.equal(await count('accounts'), accounts);
  });

  test('request_welcome (a user opening the chat) gets the welcome text', async () => {
    const user: WhatsAppUser = { phone: '15550007201', bsuid: 'US.70000000000000007201' };
    const welcome = inboundWebhook(user, { type: 'request_welcome' });
    const { sent } = await converse(welcome);
    assert.equal(sent.length, 1);
    assert.match(
      textOf(sent[0]!),
      /^Welcome! Your account is ready, with 5 free credits to start\.\n\nHere is what I can do:/,
    );
    assert.equal(sent[0]!.body.to, user.phone);
    assert.equal(markedRead(welcome.id), false, 'an event, not a message to tick');
  });

  test('a button reply titled `balance` answers the balance; list rows and template buttons read as their text', async () => {
    const user: WhatsAppUser = { phone: '15550007301', bsuid: 'US.70000000000000007301' };
    await converse(inboundWebhook(user, text('hi')));
    const button = inboundWebhook(user, {
      type: 'interactive',
      context: { from: '15550101234', id: 'wamid.OURBUTTONS' },
      interactive: { type: 'button_reply', button_reply: { id: 'btn-balance', title: 'balance' } },
    });
    const pressed = await converse(button);
    assert.equal(textOf(pressed.sent[0]!), 'You have 5 credits.');
    assert.ok(markedRead(button.id));
    const list = await converse(
      inboundWebhook(user, {
        type: 'interactive',
        interactive: {
          type: 'list_reply',
          list_reply: { id: 'row-help', title: 'Help', description: 'What I can do' },
        },
      }),
    );
    assert.match(textOf(list.sent[0]!), /^Here is what I can do:/);
    const template = await converse(
      inboundWebhook(user, {
        type: 'button',
        context: { id: 'wamid.OURTEMPLATE' },
        button: { payload: 'BAL', text: 'Balance' },
      }),
    );
    assert.equal(textOf(template.sent[0]!), 'You have 5 credits.');
  });

  test('an image or a document captioned with a link starts the post flow, as the link in a text would', async () => {
    const user: WhatsAppUser = { phone: '15550007401', bsuid: 'US.70000000000000007401' };
    await converse(inboundWebhook(user, text('hi')));
    const image = inboundWebhook(user, {
      type: 'image',
      image: {
        caption: 'Write about this: https://example.org/tides.',
        mime_type: 'image/jpeg',
        sha256: 'n4e7C6eJ0pW0bXlVZ2h0cGFzdGE=',
        id: '1479537139650973',
      },
    });
    await post(image.body);
    const [processed] = await deliver(['whatsapp.process_message']);
    assert.equal(processed!.outcome, 'succeeded');
    const scrape = t.enqueued.find((c) => c.task === 'scraper.scrape_page');
    assert.ok(scrape, 'a scrape of the captioned link is enqueued');
    assert.deepEqual(
      { url: (scrape.payload as { url: string }).url, requestId: (scrape.payload as { requestId: string }).requestId },
      { url: 'https://example.org/tides', requestId: image.id },
    );
    const reply = t.enqueued.find((c) => c.task === 'whatsapp.send_message')!.payload as { text: string };
    assert.match(reply.text, /^On it: reading https:\/\/example\.org\/tides/);
    t.enqueued.length = 0;

    const document = inboundWebhook(user, {
      type: 'document',
      document: { caption: 'https://example.org/paper', filename: 'paper.pdf', mime_type: 'application/pdf', id: '2' },
    });
    await post(document.body);
    await deliver(['whatsapp.process_message']);
    assert.equal(
      (t.enqueued.find((c) => c.task === 'scraper.scrape_page')?.payload as { url: string } | undefined)?.url,
      'https://example.org/paper',
    );
    t.enqueued.length = 0;

    // A picture with no link in its caption is still one we cannot read.
    const plain = await converse(
      inboundWebhook(user, { type: 'image', image: { caption: 'my cat', mime_type: 'image/jpeg', id: '3' } }),
    );
    assert.match(textOf(plain.sent[0]!), /can't read pictures yet/);
  });
});
