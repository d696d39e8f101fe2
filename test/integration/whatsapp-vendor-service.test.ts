// WhatsApp traffic in the shapes Meta documents for 2026 (business-scoped user ids, id changes, the
// message types besides text) through the whole service as `npm start` runs it: a child process
// with its embedded emulator pushing tasks over HTTP, the Graph API replaced by a local fake that
// reads `to` and `recipient` as Meta does, and the `backend` CLI to look at the ledger and the runs.
// Last, a free Stripe session (signed by the official stripe package) for a user known only by
// BSUID: credited once and confirmed once, through `recipient`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import Stripe from 'stripe';
import { type RunningBackend, runBackend } from '../helpers/cli-process.ts';
import type { FakeGraphApi, GraphRequest } from '../helpers/fake-graph-api.ts';
import { type PageServer, startPageServer } from '../helpers/page-server.ts';
import { type ServiceProcess, startServiceProcess } from '../helpers/service-process.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { inboundWebhook, text, userIdChangedWebhook, type WhatsAppUser } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'e2e-vendor-secret';
const STRIPE_SECRET = 'whsec_e2e_vendor_service';
const ARTICLE = readFileSync(new URL('../fixtures/pages/news-article.html', import.meta.url));

const textOf = (r: GraphRequest) => (r.body.text as { body: string }).body;
const repliedTo = (r: GraphRequest) => (r.body.context as { message_id: string } | undefined)?.message_id;

describe(`WhatsApp vendor traffic through npm start (${testDbKind})`, () => {
  let running: ServiceProcess | undefined;
  let graph: FakeGraphApi;
  let service: RunningBackend;
  let env: Record<string, string>;
  let pages: PageServer;
  before(async () => {
    pages = await startPageServer(() => ({ body: ARTICLE }));
    running = await startServiceProcess({
      appSecret: APP_SECRET,
      env: {
        // The captioned link points at the local page server.
        SCRAPER_ALLOW_PRIVATE_NETWORKS: 'true',
        STRIPE_WEBHOOK_SECRET: STRIPE_SECRET,
        SIGNUP_CREDITS: '5',
        POST_COST_CREDITS: '2',
      },
    });
    ({ graph, service, env } = running);
    await running.ready;
  });
  after(async () => {
    await running?.close();
    await pages?.close();
  });

  const post = async (body: string) => {
    const r = await running!.postWebhook(body);
    assert.equal(r.status, 200, await r.text());
  };
  const message = (user: WhatsAppUser, m: Record<string, unknown>) =>
    inboundWebhook(user, m, { phoneNumberId: graph.phoneNumberId });
  /** Posts one message and waits for `n` new sends; returns them. */
  const converse = async (m: { id: string; body: string }, n = 1) => {
    const before = graph.sent().length;
    await post(m.body);
    return (await graph.waitForSent(before + n)).slice(before);
  };
  const cli = async (...args: string[]) => {
    const r = await runBackend(args, env);
    assert.equal(r.code, 0, `backend ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const conversation = async (user: string) =>
    (await cli('whatsapp', 'conversations', '--user', user, '--json'))
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            direction: string;
            waUser: string;
            accountId: number;
            type: string;
            status: string;
            body: string | null;
          },
      );
  const accountOf = async (user: string) => {
    const ids = new Set((await conversation(user)).map((l) => l.accountId).filter((a) => a !== null));
    assert.equal(ids.size, 1, `one account for ${user}: ${[...ids]}`);
    return [...ids][0]!;
  };

  test('a BSUID-only user (no `from`, no `wa_id`) gets the reply through `recipient`, never `to`', async () => {
    const user: WhatsAppUser = { bsuid: 'US.13491208655302741918', username: '@ana.tides', name: 'Ana' };
    const hello = message(user, text('help'));
    const [reply] = await converse(hello);
    assert.equal(reply!.path, `/v23.0/${graph.phoneNumberId}/messages`);
    assert.equal(reply!.body.recipient, user.bsuid);
    assert.equal(reply!.body.to, undefined, 'a BSUID never goes in `to`');
    assert.equal(repliedTo(reply!), hello.id);
    assert.match(textOf(reply!), /^Welcome! Your account is ready, with 5 free credits/);
    assert.ok(
      graph.requests.some((r) => r.body.status === 'read' && r.body.message_id === hello.id),
      'the message is marked read',
    );
    const lines = await conversation(user.bsuid);
    assert.deepEqual(
      lines.map((l) => [l.direction, l.waUser, l.status]),
      [
        ['out', user.bsuid, 'accepted'],
        ['in', user.bsuid, 'processed'],
      ],
    );
  });

  test('after `user_changed_user_id` the next message from the new BSUID reaches the same account: same balance, one sign-up grant', async () => {
    const oldId = 'BR.90817263544536271809';
    const newId = 'BR.11223344556677889900';
    const [welcome] = await converse(message({ bsuid: oldId, name: 'Bea' }, text('hi')));
    assert.equal(welcome!.body.recipient, oldId);
    const account = await accountOf(oldId);
    // Credits bought since (an operator's adjustment stands in for a Stripe top-up here).
    assert.match(await cli('credits', 'grant', String(account), '20', '--reason', 'bought 20'), /balance 25/);

    // Meta's system message: no contacts array; the old BSUID on the message, the new one in `system`.
    const change = userIdChangedWebhook(
      { from: oldId, to: newId, name: 'Bea' },
      { phoneNumberId: graph.phoneNumberId },
    );
    const systemId = change.id;
    await post(change.body);
    await service.waitForLine(new RegExp(`"wamid":"${systemId}".*system message processed`));
    // Committed (the CLI reads what the service wrote), and filed under the same account.
    const system = (await conversation(String(account))).find((l) => l.type === 'system');
    assert.equal(system?.status, 'processed');

    const sentBefore = graph.sent().length;
    const [balance] = await converse(message({ bsuid: newId, name: 'Bea' }, text('balance')));
    assert.equal(textOf(balance!), 'You have 25 credits.');
    assert.equal(balance!.body.recipient, newId);
    assert.equal(graph.sent().length, sentBefore + 1, 'no reply to the system message');
    assert.equal(await accountOf(newId), account);
    const ledger = await cli('credits', 'history', String(account));
    assert.match(ledger, /balance 25/);
    assert.equal((ledger.match(/ signup_grant /g) ?? []).length, 1, ledger);
  });

  test('131062 (a BSUID recipient is not supported for this message): the send is dead with its reason', async () => {
    graph.script({ code: 131062, details: 'Business-scoped User ID recipients are not supported for this message.' });
    const before = graph.sent().length;
    const hello = message({ bsuid: 'DE.55501234987612340001' }, text('hello'));
    await post(hello.body);
    await service.waitForLine(/task dead: Graph API error 131062/);
    const [refused] = graph.sent().slice(before);
    assert.equal(refused!.body.recipient, 'DE.55501234987612340001');
    const dead = await cli('runs', 'list', '--status', 'dead', '--task', 'whatsapp.send_message');
    assert.match(dead, new RegExp(`reply:${hello.id}`));
    assert.match(dead, /Graph API error 131062/);
    // The list cuts long errors; the run itself keeps Meta's reason whole.
    const runId = new RegExp(`^(\\d+) .*reply:${hello.id}`, 'm').exec(dead)![1]!;
    const run = JSON.parse(await cli('runs', 'show', runId)) as { status: string; lastError: string };
    assert.equal(run.status, 'dead');
    assert.match(run.lastError, /131062.*business-scoped user id recipients are not supported/i);
    const [out] = (await conversation('DE.55501234987612340001')).filter((l) => l.direction === 'out');
    assert.equal(out?.status, 'failed');
  });

  test('a reaction and its removal send nothing: the only send after them answers a later message', async () => {
    const user: WhatsAppUser = { phone: '15550008101', bsuid: 'US.80000000000000008101' };
    await converse(message(user, text('hi')));
    // Meta's reaction names the message reacted to; the service does not need it to be one it knows.
    const target = 'wamid.HBgLMTU1NTAwMDgxMDEVAgARGBJBQkNERUYwMTIzNDU2Nzg5AA==';
    const reacted = message(user, { type: 'reaction', reaction: { message_id: target, emoji: '\u{1F44D}' } });
    const removed = message(user, { type: 'reaction', reaction: { message_id: target } });
    const before = graph.sent().length;
    await post(reacted.body);
    await post(removed.body);
    const barrier = message(user, text('balance'));
    await post(barrier.body);
    const sent = (await graph.waitForSent(before + 1)).slice(before);
    assert.equal(repliedTo(sent[0]!), barrier.id);
    assert.equal(textOf(sent[0]!), 'You have 5 credits.');
    // Both reactions were processed (committed) and wrote no reply: none queued, none run, none sent.
    const lines = await conversation(user.phone!);
    assert.deepEqual(
      lines.filter((l) => l.type === 'reaction').map((l) => [l.direction, l.status]),
      [
        ['in', 'processed'],
        ['in', 'processed'],
      ],
    );
    assert.equal(lines.filter((l) => l.direction === 'out').length, 2, 'our first reply and the barrier reply');
    for (const m of [reacted, removed]) {
      assert.doesNotMatch(await cli('runs', 'list', '--key', `reply:${m.id}`), new RegExp(m.id));
      assert.ok(!graph.requests.some((r) => r.body.status === 'read' && r.body.message_id === m.id), 'not marked read');
    }
    assert.equal(graph.sent().length, before + 1);
  });

  test('request_welcome (a user opening the chat) gets the welcome text', async () => {
    const user: WhatsAppUser = { phone: '15550008201', bsuid: 'US.80000000000000008201' };
    const opened = message(user, { type: 'request_welcome' });
    const [reply] = await converse(opened);
    assert.match(
      textOf(reply!),
      /^Welcome! Your account is ready, with 5 free credits to start\.\n\nHere is what I can do:/,
    );
    assert.equal(reply!.body.to, user.phone);
  });

  test('a button reply whose title is `balance` answers the balance', async () => {
    const user: WhatsAppUser = { phone: '15550008301', bsuid: 'US.80000000000000008301' };
    await converse(message(user, text('hi')));
    const pressed = message(user, {
      type: 'interactive',
      context: { from: '15550101234', id: 'wamid.OURBUTTONS' },
      interactive: { type: 'button_reply', button_reply: { id: 'btn-balance', title: 'balance' } },
    });
    const [reply] = await converse(pressed);
    assert.equal(repliedTo(reply!), pressed.id);
    assert.equal(textOf(reply!), 'You have 5 credits.');
  });

  test('an image captioned with a link starts the post flow: the page is read and the post is ready', async () => {
    const user: WhatsAppUser = { phone: '15550008401', bsuid: 'US.80000000000000008401' };
    await converse(message(user, text('hi')));
    const url = `${pages.url}/news/harbour`;
    const image = message(user, {
      type: 'image',
      image: {
        caption: `Write about this: ${url}`,
        mime_type: 'image/jpeg',
        sha256: 'n4e7C6eJ0pW0bXlVZ2h0cGFzdGE=',
        id: '1479537139650973',
      },
    });
    const [onIt, ready] = await converse(image, 2);
    assert.equal(repliedTo(onIt!), image.id);
    assert.ok(textOf(onIt!).startsWith(`On it: reading ${url}`), textOf(onIt!));
    assert.match(textOf(ready!), new RegExp(`Your post is ready: .*${env.PUBLIC_BASE_URL}/posts/[a-z0-9-]+`, 's'));
    assert.deepEqual(pages.hits, ['/news/harbour']);
    const ledger = await cli('credits', 'history', String(await accountOf(user.phone!)));
    assert.match(ledger, /balance 3/);
    assert.equal((ledger.match(/ charge /g) ?? []).length, 1, ledger);
  });

  test('a free Stripe session (100% promotion code) for a BSUID-only user credits, delivered twice, confirmed once through `recipient`', async () => {
    const bsuid = 'GB.80000000000000008501';
    await converse(message({ bsuid }, text('hi')));
    const account = await accountOf(bsuid);
    // Stripe's fixture event (API version 2025-03-31.basil) with a session made free by a promotion code.
    const event = JSON.parse(
      readFileSync(new URL('../fixtures/stripe/checkout.session.completed.json', import.meta.url), 'utf8'),
    );
    event.id = `evt_e2e_free_${testDbKind}`;
    Object.assign(event.data.object, {
      id: `cs_test_e2e_free_${testDbKind}`,
      client_reference_id: String(account),
      payment_intent: null,
      payment_status: 'no_payment_required',
      amount_total: 0,
      total_details: { amount_discount: 500, amount_shipping: 0, amount_tax: 0 },
    });
    const body = JSON.stringify(event);
    const before = graph.sent().length;
    const outcomes = [];
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${env.PUBLIC_BASE_URL}/webhooks/stripe`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret: STRIPE_SECRET }),
        },
        body,
      });
      assert.equal(r.status, 200);
      outcomes.push(((await r.json()) as { outcome: string }).outcome);
    }
    assert.deepEqual(outcomes, ['topup_enqueued', 'duplicate']);
    const [confirmation] = (await graph.waitForSent(before + 1)).slice(before);
    assert.equal(textOf(confirmation!), 'Payment received: 50 credits added. You have 55 credits.');
    assert.equal(confirmation!.body.recipient, bsuid);
    assert.equal(confirmation!.body.to, undefined);
    // A later message is the only other send: the confirmation went once.
    const [balance] = await converse(message({ bsuid }, text('balance')));
    assert.equal(textOf(balance!), 'You have 55 credits.');
    assert.equal(graph.sent().length, before + 2);
    const ledger = await cli('credits', 'history', String(account));
    assert.match(ledger, /balance 55/);
    assert.match(ledger, /topup\s+\+50\s+55 /);
  });
});
