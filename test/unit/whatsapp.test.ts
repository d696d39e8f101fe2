// The WhatsApp domain's pure parts: commands, message splitting, Graph error classes, signatures,
// the webhook schema.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { findUrl, marksRead, parseCommand } from '../../src/domains/whatsapp/commands.ts';
import { classifyGraphError, GraphApiError } from '../../src/domains/whatsapp/graph-api.ts';
import { identityChangeOf, isBsuid, recipientFields, senderOf } from '../../src/domains/whatsapp/identity.ts';
import { MAX_TEXT_LENGTH, splitMessage } from '../../src/domains/whatsapp/replies.ts';
import {
  parseWebhook,
  signWebhook,
  textWebhook,
  verifyHandshake,
  verifyWebhookSignature,
  WebhookPayloadError,
} from '../../src/domains/whatsapp/webhook.ts';
import { messagesWebhook, statusesWebhook } from '../helpers/whatsapp-webhooks.ts';

test('commands are case-insensitive; a URL wins; blog needs a topic; anything else is help', () => {
  assert.deepEqual(parseCommand('text', '  BALANCE '), { kind: 'balance' });
  assert.deepEqual(parseCommand('text', 'Top up'), { kind: 'topup' });
  assert.deepEqual(parseCommand('text', 'help'), { kind: 'help', unknown: false });
  assert.deepEqual(parseCommand('text', 'what can you do?'), { kind: 'help', unknown: true });
  assert.deepEqual(parseCommand('text', 'Blog:   the   tides'), { kind: 'post_on_topic', topic: 'the tides' });
  assert.deepEqual(parseCommand('text', 'blog'), { kind: 'help', unknown: true });
  assert.deepEqual(parseCommand('text', 'blogging is fun'), { kind: 'help', unknown: true });
  assert.deepEqual(parseCommand('text', 'blog about https://example.org/a'), {
    kind: 'post_from_url',
    url: 'https://example.org/a',
  });
  assert.deepEqual(parseCommand('image', null), { kind: 'unsupported', type: 'image' });
  assert.deepEqual(parseCommand('reaction', null), { kind: 'none', type: 'reaction' });
  const long = parseCommand('text', `blog ${'x'.repeat(1000)}`);
  assert.equal(long.kind === 'post_on_topic' && long.topic.length, 300);
});

test('findUrl drops sentence punctuation and unbalanced brackets, keeps balanced ones', () => {
  assert.equal(findUrl('see https://example.org/a?b=1.'), 'https://example.org/a?b=1');
  assert.equal(findUrl('(https://example.org/x)'), 'https://example.org/x');
  assert.equal(
    findUrl('https://en.wikipedia.org/wiki/Tide_(disambiguation)!'),
    'https://en.wikipedia.org/wiki/Tide_(disambiguation)',
  );
  assert.equal(findUrl('HTTP://EXAMPLE.ORG'), 'HTTP://EXAMPLE.ORG');
  assert.equal(findUrl('ftp://example.org or example.org'), undefined);
});

test('long replies split at paragraph, line, then sentence boundaries, each part within the limit', () => {
  assert.deepEqual(splitMessage('short'), ['short']);
  const paragraph = `${'A sentence here. '.repeat(150).trim()}`;
  const text = [paragraph, paragraph, paragraph].join('\n\n');
  const parts = splitMessage(text);
  assert.ok(parts.length >= 2);
  for (const p of parts) assert.ok(p.length <= MAX_TEXT_LENGTH, `part of ${p.length}`);
  assert.equal(parts.join(' ').replace(/\s+/g, ' '), text.replace(/\s+/g, ' '));
  for (const p of parts.slice(0, -1)) assert.match(p, /\.$/, 'cut after a sentence');
  const unbroken = 'x'.repeat(MAX_TEXT_LENGTH * 2 + 5);
  assert.deepEqual(
    splitMessage(unbroken).map((p) => p.length),
    [MAX_TEXT_LENGTH, MAX_TEXT_LENGTH, 5],
  );
});

test('Graph API errors are classified by code: rate limits wait, 5xx retry, window and recipients are dead', () => {
  const err = (code: number | undefined, httpStatus?: number) =>
    new GraphApiError('x', { ...(code !== undefined ? { code } : {}), ...(httpStatus ? { httpStatus } : {}) });
  assert.deepEqual(classifyGraphError(err(131056, 400), 1), { kind: 'retry-after', seconds: 4 });
  assert.deepEqual(classifyGraphError(err(131056, 400), 2), { kind: 'retry-after', seconds: 16 });
  assert.deepEqual(classifyGraphError(err(131056, 400), 9), { kind: 'retry-after', seconds: 900 });
  assert.equal(classifyGraphError(err(130429, 429), 1).kind, 'retry-after');
  assert.equal(classifyGraphError(err(2, 503), 1).kind, 'retry');
  assert.equal(classifyGraphError(err(undefined, 502), 1).kind, 'retry');
  assert.equal(classifyGraphError(err(undefined), 1).kind, 'retry', 'a network error');
  for (const code of [131047, 131026, 100, 131009, 190, 10, 200, 368]) {
    assert.equal(classifyGraphError(err(code, 400), 1).kind, 'dead', String(code));
  }
  const window = classifyGraphError(new GraphApiError('Re-engagement message', { code: 131047, httpStatus: 400 }), 1);
  assert.match(window.kind === 'dead' ? window.reason : '', /131047: more than 24 hours/);
  assert.equal(classifyGraphError(err(999999, 400), 1).kind, 'dead', 'an unknown code on a 4xx');
});

test('X-Hub-Signature-256 over the raw bytes, and the GET handshake', () => {
  const body = Buffer.from('{"a":"caf\\u00e9"}');
  const ok = verifyWebhookSignature(body, signWebhook(body, 's3cret'), 's3cret');
  assert.deepEqual(ok, { ok: true });
  assert.equal(
    verifyWebhookSignature(body, signWebhook(body, 's3cret').toUpperCase().replace('SHA256', 'sha256'), 's3cret').ok,
    true,
  );
  assert.equal(verifyWebhookSignature(body, undefined, 's3cret').ok, false);
  assert.equal(verifyWebhookSignature(body, signWebhook('{"a":"café"}', 's3cret'), 's3cret').ok, false);
  assert.deepEqual(verifyHandshake({ 'hub.mode': 'subscribe', 'hub.verify_token': 't', 'hub.challenge': '42' }, 't'), {
    ok: true,
    challenge: '42',
  });
  assert.equal(
    verifyHandshake({ 'hub.mode': 'subscribe', 'hub.verify_token': 't', 'hub.challenge': '42' }, undefined).ok,
    false,
  );
});

test('X-Hub-Signature-256 refusals: each malformed or wrong header is refused, with the check that failed', () => {
  const body = Buffer.from('{"entry":[]}');
  const good = signWebhook(body, 's3cret');
  const refused = (header: string | undefined) => verifyWebhookSignature(body, header, 's3cret');
  assert.deepEqual(refused(undefined), { ok: false, reason: 'no X-Hub-Signature-256 header' });
  assert.deepEqual(refused(''), { ok: false, reason: 'no X-Hub-Signature-256 header' });
  const malformed = { ok: false, reason: 'X-Hub-Signature-256 is not sha256=<64 hex digits>' };
  // Anchored at both ends: nothing before the scheme, nothing after the 64 digits.
  assert.deepEqual(refused(`x${good}`), malformed);
  assert.deepEqual(refused(`${good}00`), malformed);
  assert.deepEqual(refused(good.replace('sha256=', 'sha1=')), malformed);
  assert.deepEqual(refused(good.slice(0, -2)), malformed);
  // Surrounding whitespace (a proxy's folding) is not part of the value.
  assert.deepEqual(refused(` ${good} `), { ok: true });
  assert.deepEqual(refused(signWebhook(body, 'other')), {
    ok: false,
    reason: 'X-Hub-Signature-256 does not match the body',
  });
});

test('the GET handshake refuses a wrong mode, a missing or oversized challenge and a wrong token', () => {
  const query = (over: Record<string, unknown>) => ({
    'hub.mode': 'subscribe',
    'hub.verify_token': 'token',
    'hub.challenge': '42',
    ...over,
  });
  assert.deepEqual(verifyHandshake(query({}), undefined), { ok: false, reason: 'WHATSAPP_VERIFY_TOKEN is not set' });
  assert.deepEqual(verifyHandshake(query({}), ''), { ok: false, reason: 'WHATSAPP_VERIFY_TOKEN is not set' });
  assert.deepEqual(verifyHandshake(query({ 'hub.mode': 'unsubscribe' }), 'token'), {
    ok: false,
    reason: 'hub.mode is not subscribe',
  });
  const noChallenge = { ok: false, reason: 'hub.challenge is missing' };
  assert.deepEqual(verifyHandshake(query({ 'hub.challenge': undefined }), 'token'), noChallenge);
  assert.deepEqual(verifyHandshake(query({ 'hub.challenge': ['1', '2'] }), 'token'), noChallenge);
  assert.deepEqual(verifyHandshake(query({ 'hub.challenge': '' }), 'token'), noChallenge);
  assert.deepEqual(verifyHandshake(query({ 'hub.challenge': 'c'.repeat(513) }), 'token'), noChallenge);
  assert.deepEqual(verifyHandshake(query({ 'hub.challenge': 'c'.repeat(512) }), 'token'), {
    ok: true,
    challenge: 'c'.repeat(512),
  });
  const wrongToken = { ok: false, reason: 'hub.verify_token does not match' };
  // Same length, different bytes; another length (which timingSafeEqual alone would throw on);
  // absent; not a string (a repeated query parameter).
  assert.deepEqual(verifyHandshake(query({ 'hub.verify_token': 'tokeN' }), 'token'), wrongToken);
  assert.deepEqual(verifyHandshake(query({ 'hub.verify_token': 'tok' }), 'token'), wrongToken);
  assert.deepEqual(verifyHandshake(query({ 'hub.verify_token': undefined }), 'token'), wrongToken);
  assert.deepEqual(verifyHandshake(query({ 'hub.verify_token': ['token'] }), 'token'), wrongToken);
});

test('the webhook schema: messages and statuses out, unknown fields ignored, malformed refused', () => {
  const json = JSON.parse(textWebhook([{ from: '15551234567', text: 'hi', wamid: 'wamid.A', name: 'Ana' }]));
  json.entry[0].changes[0].value.messages[0].brand_new_field = { x: 1 };
  json.entry[0].changes.push({ field: 'message_template_status_update', value: { event: 'APPROVED' } });
  const parsed = parseWebhook(json);
  assert.equal(parsed.messages.length, 1);
  assert.deepEqual(
    { ...parsed.messages[0], raw: undefined },
    {
      wamid: 'wamid.A',
      phone: '15551234567',
      bsuid: null,
      name: 'Ana',
      username: null,
      phoneNumberId: '109876543210987',
      type: 'text',
      body: 'hi',
      messageAt: new Date(1_793_836_800_000),
      raw: undefined,
    },
  );
  assert.deepEqual(parsed.ignored, ['field message_template_status_update']);
  assert.throws(() => parseWebhook({ entry: [] }), WebhookPayloadError);
  const bad = JSON.parse(textWebhook([{ from: '1', text: 'x', wamid: 'w' }]));
  bad.entry[0].changes[0].value.messages[0].timestamp = 'yesterday';
  assert.throws(() => parseWebhook(bad), /timestamp/);
});

test('WhatsApp and LLM settings that need each other are checked together', () => {
  assert.throws(
    () => loadConfig({ WHATSAPP_ACCESS_TOKEN: 'EAAG' }),
    (err: unknown) => err instanceof ConfigError && /WHATSAPP_PHONE_NUMBER_ID is required/.test(err.message),
  );
  assert.throws(
    () => loadConfig({ LLM_BASE_URL: 'http://localhost:11434/v1' }),
    (err: unknown) => err instanceof ConfigError && /LLM_MODEL is required/.test(err.message),
  );
  assert.equal(loadConfig({ LLM_BASE_URL: 'http://localhost:11434/v1', LLM_MODEL: 'llama3.1' }).llm.model, 'llama3.1');
});

test('message types: buttons and list rows read as their title, captions with a link ask for a post, reactions for nothing', () => {
  assert.deepEqual(parseCommand('interactive', 'Balance'), { kind: 'balance' });
  assert.deepEqual(parseCommand('button', 'top up'), { kind: 'topup' });
  assert.deepEqual(parseCommand('image', 'look: https://example.org/a.'), {
    kind: 'post_from_url',
    url: 'https://example.org/a',
  });
  assert.deepEqual(parseCommand('document', 'my notes'), { kind: 'unsupported', type: 'document' });
  assert.deepEqual(parseCommand('request_welcome', null), { kind: 'welcome' });
  assert.deepEqual(parseCommand('interactive', null), { kind: 'unsupported', type: 'interactive' });
  assert.equal(marksRead('text'), true);
  assert.equal(marksRead('image'), true);
  for (const type of ['system', 'reaction', 'request_welcome']) assert.equal(marksRead(type), false, type);

  const body = (message: Record<string, unknown>) =>
    parseWebhook(messagesWebhook({ messages: [{ id: 'w', timestamp: '1', from: '15551234567', ...message }] }))
      .messages[0]!.body;
  assert.equal(
    body({ type: 'interactive', interactive: { type: 'button_reply', button_reply: { id: 'b1', title: 'balance' } } }),
    'balance',
  );
  assert.equal(
    body({
      type: 'interactive',
      interactive: { type: 'list_reply', list_reply: { id: 'r', title: 'help', description: 'd' } },
    }),
    'help',
  );
  assert.equal(body({ type: 'button', button: { payload: 'P', text: 'topup' } }), 'topup');
  assert.equal(
    body({ type: 'image', image: { id: '1', mime_type: 'image/jpeg', caption: 'https://e.org' } }),
    'https://e.org',
  );
  assert.equal(body({ type: 'reaction', reaction: { message_id: 'wamid.X' } }), null);
});

test('identity: who sent a message, whatever ids Meta gives; what a system message changes; where a reply goes', () => {
  const bsuid = 'US.13491208655302741918';
  assert.equal(isBsuid(bsuid), true);
  assert.equal(isBsuid('US.ENT.11815799212886844830'), true);
  assert.equal(isBsuid('15551234567'), false);
  assert.deepEqual(
    senderOf({ type: 'text', from_user_id: bsuid }, [{ user_id: bsuid, profile: { name: 'Ana', username: '@ana' } }]),
    { phone: null, bsuid, name: 'Ana', username: '@ana' },
  );
  assert.deepEqual(
    senderOf({ type: 'text', from: '15551234567', from_user_id: bsuid }, [{ wa_id: '15551234567', user_id: bsuid }]),
    {
      phone: '15551234567',
      bsuid,
      name: null,
      username: null,
    },
  );
  // A BSUID where a phone number is expected is still read as a BSUID.
  assert.equal(senderOf({ type: 'text', from: bsuid }, [])!.bsuid, bsuid);
  assert.equal(senderOf({ type: 'text' }, []), undefined);
  // A system message naming no sender on the message: the id it changed from.
  assert.equal(
    senderOf(
      {
        type: 'system',
        system: { type: 'user_changed_user_id', body: `User Ana changed from ${bsuid} to US.777`, user_id: 'US.777' },
      },
      [],
    )!.bsuid,
    bsuid,
  );
  assert.deepEqual(identityChangeOf({ type: 'user_changed_user_id', user_id: 'US.777', body: 'x' }), {
    type: 'user_changed_user_id',
    phone: null,
    bsuid: 'US.777',
  });
  assert.deepEqual(identityChangeOf({ type: 'user_changed_number', wa_id: '15550009999', body: 'x' }), {
    type: 'user_changed_number',
    phone: '15550009999',
    bsuid: null,
  });
  assert.equal(identityChangeOf({ type: 'customer_identity_changed' }), undefined);
  assert.equal(identityChangeOf({ type: 'user_changed_user_id' }), undefined);
  assert.deepEqual(recipientFields('15551234567'), { to: '15551234567' });
  assert.deepEqual(recipientFields(bsuid), { recipient: bsuid });
  const dead = classifyGraphError(new GraphApiError('x', { httpStatus: 400, code: 131062 }), 1);
  assert.equal(dead.kind, 'dead');
  assert.match(dead.kind === 'dead' ? dead.reason : '', /131062: business-scoped user id recipients are not supported/);
});

test('a status for a message sent to a BSUID names its recipient by recipient_user_id', () => {
  const status = (fields: Record<string, unknown>) => parseWebhook(statusesWebhook([fields])).statuses[0]!.recipient;
  assert.equal(status({ recipient_user_id: 'US.13491208655302741918' }), 'US.13491208655302741918');
  assert.equal(status({ recipient_id: '15551234567', recipient_user_id: 'US.13491208655302741918' }), '15551234567');
  assert.equal(status({}), null);
});
