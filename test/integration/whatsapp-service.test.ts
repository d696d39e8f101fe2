// WhatsApp through the whole service as `npm start` runs it (a child process with its embedded
// emulator pushing tasks over HTTP), with the Graph API replaced by a local fake.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { signWebhook, textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { type RunningBackend, runBackend } from '../helpers/cli-process.ts';
import type { FakeGraphApi } from '../helpers/fake-graph-api.ts';
import { type ServiceProcess, startServiceProcess } from '../helpers/service-process.ts';
import { testDbKind } from '../helpers/test-db.ts';

const APP_SECRET = 'e2e-app-secret';
let seq = 0;
const wamid = () => `wamid.E2E${++seq}x${Date.now().toString(36)}`;

describe(`WhatsApp through npm start (${testDbKind})`, () => {
  let running: ServiceProcess | undefined;
  let graph: FakeGraphApi;
  let service: RunningBackend;
  let env: Record<string, string>;
  before(async () => {
    running = await startServiceProcess({ appSecret: APP_SECRET });
    ({ graph, service, env } = running);
    await running.ready;
  });
  after(() => running?.close());

  const post = (body: string, signature = signWebhook(body, APP_SECRET)) =>
    fetch(`${env.PUBLIC_BASE_URL}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
      body,
    });
  const textOf = (r: { body: Record<string, unknown> }) => (r.body.text as { body: string }).body;
  const repliedTo = (r: { body: Record<string, unknown> }) => (r.body.context as { message_id: string }).message_id;

  test('help: one correct POST /{phone-number-id}/messages within 2 s; the same webhook again and a forged one produce nothing', async () => {
    const id = wamid();
    const body = textWebhook([{ from: '15557654321', text: 'help', wamid: id }]);
    const started = performance.now();
    const response = await post(body);
    assert.equal(response.status, 200);
    const [reply] = await graph.waitForSent(1);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 2000, `reply after ${Math.round(elapsed)} ms`);
    assert.equal(reply!.path, `/v23.0/${graph.phoneNumberId}/messages`);
    assert.equal(reply!.authorization, `Bearer ${graph.accessToken}`);
    assert.equal(reply!.body.messaging_product, 'whatsapp');
    assert.equal(reply!.body.to, '15557654321');
    assert.equal(repliedTo(reply!), id);
    assert.match(textOf(reply!), /Here is what I can do/);

    assert.equal((await post(body)).status, 200);
    await service.waitForLine(/whatsapp webhook: 0 new, 1 duplicate/);
    const forged = await post(body.replace('help', 'balance'), signWebhook(body, APP_SECRET));
    assert.equal(forged.status, 403);
    // A later message is answered, and it is the only other send: neither produced anything.
    const barrier = wamid();
    await post(textWebhook([{ from: '15557654321', text: 'balance', wamid: barrier }]));
    const sent = await graph.waitForSent(2);
    assert.equal(repliedTo(sent[1]!), barrier);
    assert.equal(graph.sent().length, 2);
  });

  test('three messages from two senders: three replies to the right senders', async () => {
    const before = graph.sent().length;
    const ids = [wamid(), wamid(), wamid()];
    const response = await post(
      textWebhook([
        { from: '15550100001', text: 'balance', wamid: ids[0]! },
        { from: '15550100002', text: 'help', wamid: ids[1]! },
        { from: '15550100001', text: 'topup', wamid: ids[2]! },
      ]),
    );
    assert.equal(response.status, 200);
    const sent = (await graph.waitForSent(before + 3)).slice(before);
    const byMessage = new Map(sent.map((r) => [repliedTo(r), r.body.to]));
    assert.deepEqual(
      ids.map((i) => byMessage.get(i)),
      ['15550100001', '15550100002', '15550100001'],
    );
  });

  test('131056 then success: retried after the advised delay and sent once; 131047: dead with the reason in runs list', async () => {
    let before = graph.sent().length;
    graph.script({ code: 131056 });
    const id = wamid();
    await post(textWebhook([{ from: '15550200001', text: 'balance', wamid: id }]));
    const [refused, accepted] = (await graph.waitForSent(before + 2)).slice(before);
    assert.equal(repliedTo(refused!), id);
    assert.equal(repliedTo(accepted!), id);
    assert.ok(accepted!.at - refused!.at >= 3900, `retried after ${Math.round(accepted!.at - refused!.at)} ms`);

    before = graph.sent().length;
    graph.script({ code: 131047, details: 'Message failed to send because more than 24 hours have passed' });
    await post(textWebhook([{ from: '15550200002', text: 'balance', wamid: wamid() }]));
    await service.waitForLine(/task dead: Graph API error 131047/);
    const list = await runBackend(['runs', 'list', '--status', 'dead'], env);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /whatsapp\.send_message/);
    assert.match(list.stdout, /131047/);
    // The successful reply was sent exactly once.
    assert.equal(graph.sent().filter((r) => repliedTo(r) === id).length, 2);
  });
});

describe(`WhatsApp offline (${testDbKind})`, () => {
  test('the curl example printed at start produces a reply in `backend whatsapp outbox`', async () => {
    const running = await startServiceProcess({ offline: true });
    const { service, env } = running;
    try {
      await running.ready;
      await service.waitForLine(/Write to the service as WhatsApp would/);
      await service.waitForLine(/-d '\{/);
      const banner = service.output();
      const url = /curl -s (\S+)/.exec(banner)![1]!;
      const signature = /x-hub-signature-256: (sha256=[0-9a-f]{64})/.exec(banner)![1]!;
      const body = /-d '(\{.*\})'/.exec(banner)![1]!;
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
        body,
      });
      assert.equal(response.status, 200);
      await service.waitForLine(/whatsapp offline outbox: reply to 15550001234/);
      const outbox = await runBackend(['whatsapp', 'outbox'], env);
      assert.equal(outbox.code, 0, outbox.stderr);
      assert.match(outbox.stdout, /15550001234/);
      assert.match(outbox.stdout, /Here is what I can do/);
      const conversations = await runBackend(['whatsapp', 'conversations', '--json'], env);
      const lines = conversations.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(
        lines.map((l) => [l.direction, l.status]),
        [
          ['out', 'offline'],
          ['in', 'processed'],
        ],
      );

      // `whatsapp simulate` signs and posts for you. Offline, a topic is declined (the offline
      // writer needs a page), before anything is charged.
      const simulated = await runBackend(
        ['whatsapp', 'simulate', 'blog the tides of the Severn', '--from', '15550009999'],
        env,
      );
      assert.equal(simulated.code, 0, simulated.stderr);
      await service.waitForLine(/(?=.*offline outbox: reply to 15550009999)(?=.*no language model is configured)/);
      const history = await runBackend(['credits', 'history', '2'], env);
      assert.match(history.stdout, /balance 10/);
      assert.doesNotMatch(history.stdout, / charge /);
    } finally {
      await running.close();
    }
  });
});
