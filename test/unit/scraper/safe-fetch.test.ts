import assert from 'node:assert/strict';
import dns from 'node:dns';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import {
  createSafeFetcher,
  FetchRefusedError,
  isPublicAddress,
  type LookupFunction,
  type RefusalReason,
  type SafeFetchOptions,
} from '../../../src/domains/scraper/safe-fetch.ts';

interface TestServer {
  port: number;
  origin: string;
  /** TCP connections accepted: the proof that a refused URL never reached the server. */
  connections: number;
  requests: number;
}

const servers: http.Server[] = [];
after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
});

async function serve(handler: http.RequestListener, host = '127.0.0.1'): Promise<TestServer> {
  const server = http.createServer((req, res) => {
    state.requests++;
    handler(req, res);
  });
  servers.push(server);
  const state: TestServer = { port: 0, origin: '', connections: 0, requests: 0 };
  server.on('connection', () => state.connections++);
  server.listen(0, host);
  await once(server, 'listening');
  state.port = (server.address() as AddressInfo).port;
  state.origin = `http://${host.includes(':') ? `[${host}]` : host}:${state.port}`;
  return state;
}

function html(body: string, contentType = 'text/html; charset=utf-8'): http.RequestListener {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': contentType });
    res.end(body);
  };
}

/** A lookup that answers from a table, like dns.lookup (with and without { all: true }). */
function fakeLookup(table: Record<string, string[]>, calls: string[] = []): LookupFunction {
  const lookup = (hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    calls.push(hostname);
    const addresses = table[hostname];
    if (!addresses) {
      return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
    }
    const list = addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    if (options.all) callback(null, list);
    else callback(null, list[0]!.address, list[0]!.family);
  };
  return lookup as unknown as LookupFunction;
}

async function refusal(promise: Promise<unknown>, reason: RefusalReason): Promise<FetchRefusedError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof FetchRefusedError, `expected FetchRefusedError, got ${String(err)}`);
    assert.equal(err.reason, reason, `${err.message} (${err.url})`);
    assert.ok(err.userMessage.length > 0);
    return err;
  }
  assert.fail(`expected a ${reason} refusal, but the fetch succeeded`);
}

function fetcher(options: SafeFetchOptions = {}) {
  const f = createSafeFetcher(options);
  after(() => f.close());
  return f;
}

test('isPublicAddress: only global unicast passes', () => {
  for (const address of ['8.8.8.8', '2606:4700::1111', '1.1.1.1', '2a00:1450:4001::200e']) {
    assert.equal(isPublicAddress(address), true, address);
  }
  const blocked = [
    ['127.0.0.1', 'loopback'],
    ['::1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['fe80::1', 'link-local'],
    ['100.64.0.1', 'CGNAT'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['fd00:ec2::254', 'unique local (AWS IMDS v6)'],
    ['fc00::1', 'unique local'],
    ['::ffff:10.0.0.1', 'IPv4-mapped private'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback, hex form'],
    ['::7f00:1', 'IPv4-compatible (deprecated; ipaddr.js says unicast)'],
    ['64:ff9b::a00:1', 'rfc6052 NAT64'],
    ['2002:a00:1::', '6to4'],
    ['2001::1', 'teredo'],
    ['192.0.2.1', 'reserved (TEST-NET)'],
    ['198.18.0.1', 'benchmarking'],
    ['240.0.0.1', 'reserved'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['not-an-ip', 'unparsable'],
  ];
  for (const [address, why] of blocked) assert.equal(isPublicAddress(address!), false, `${address}: ${why}`);
});

test('the issue’s refusal URLs are refused with a clear reason and no connection', async () => {
  const lookupCalls: string[] = [];
  const f = fetcher({ lookup: fakeLookup({}, lookupCalls) });
  const cases: Array<[string, RefusalReason]> = [
    ['http://127.0.0.1/', 'blocked_address'],
    ['http://localhost/', 'blocked_address'],
    ['http://169.254.169.254/latest/meta-data/', 'blocked_address'],
    ['http://[::1]/', 'blocked_address'],
    ['http://[::ffff:127.0.0.1]/', 'blocked_address'],
    ['http://2130706433/', 'blocked_address'],
    ['http://0x7f.1/', 'blocked_address'],
    ['http://10.0.0.1/', 'blocked_address'],
    ['file:///etc/passwd', 'unsupported_scheme'],
    ['ftp://example.com/', 'unsupported_scheme'],
  ];
  for (const [url, reason] of cases) {
    const err = await refusal(f.fetch(url), reason);
    assert.equal(err.retryable, false, url);
  }
  // Refused before any name was resolved or socket opened (a connection to a closed port 80 would
  // have been a network_error, and 169.254.169.254 a timeout).
  assert.deepEqual(lookupCalls, []);
  const err = await refusal(f.fetch('http://169.254.169.254/latest/meta-data/'), 'blocked_address');
  assert.equal(err.userMessage, "That address points to a private network, so I can't fetch it.");
});

test('other malformed or unwelcome URLs', async () => {
  const f = fetcher({ lookup: fakeLookup({ 'example.com': ['93.184.215.14'] }) });
  const cases: Array<[string, RefusalReason]> = [
    ['not a url', 'invalid_url'],
    ['', 'invalid_url'],
    ['http://', 'invalid_url'],
    ['javascript:alert(1)', 'unsupported_scheme'],
    ['data:text/html,<p>hi</p>', 'unsupported_scheme'],
    ['gopher://example.com/', 'unsupported_scheme'],
    ['http://user:pass@example.com/', 'credentials_in_url'],
    ['https://token@example.com/', 'credentials_in_url'],
    ['http://example.com:8080/', 'port_not_allowed'],
    ['https://example.com:22/', 'port_not_allowed'],
    ['http://0.0.0.0/', 'blocked_address'],
    ['http://0/', 'blocked_address'],
    ['http://[::]/', 'blocked_address'],
    ['http://[fd00:ec2::254]/', 'blocked_address'],
    ['http://100.64.0.1/', 'blocked_address'],
    ['http://192.168.0.1/', 'blocked_address'],
    ['http://017700000001/', 'blocked_address'],
    ['http://127.1/', 'blocked_address'],
    ['http://LOCALHOST./', 'blocked_address'],
    ['http://api.localhost/', 'blocked_address'],
  ];
  for (const [url, reason] of cases) await refusal(f.fetch(url), reason);
});

test('a local server is refused by default: literal, localhost, mapped, decimal and hex forms never connect', async () => {
  const server = await serve(html('<p>secret</p>'));
  const f = fetcher({ allowedPorts: [server.port] });
  for (const host of ['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '2130706433', '0x7f.1']) {
    await refusal(f.fetch(`http://${host}:${server.port}/`), 'blocked_address');
  }
  assert.equal(server.connections, 0);
  assert.equal(server.requests, 0);
});

test('a name that resolves to a private address is refused at lookup, also with several answers', async () => {
  const server = await serve(html('<p>secret</p>'));
  const calls: string[] = [];
  const lookup = fakeLookup(
    {
      'rebind.test': ['127.0.0.1'],
      'mixed.test': ['93.184.215.14', '127.0.0.1'],
      'mapped.test': ['::ffff:127.0.0.1'],
      'metadata.test': ['169.254.169.254'],
    },
    calls,
  );
  const f = fetcher({ lookup, allowedPorts: [server.port] });
  for (const name of ['rebind.test', 'mixed.test', 'mapped.test', 'metadata.test']) {
    const err = await refusal(f.fetch(`http://${name}:${server.port}/`), 'blocked_address');
    assert.equal(err.retryable, false);
  }
  assert.deepEqual(calls.sort(), ['mapped.test', 'metadata.test', 'mixed.test', 'rebind.test']);
  assert.equal(server.connections, 0);
});

test('allowPrivateNetworks: local pages are fetched, on any port', async () => {
  const server = await serve(html('<!doctype html><title>Hi</title><p>Hello, world</p>'));
  const f = fetcher({ allowPrivateNetworks: true });
  const page = await f.fetch(`${server.origin}/a?b=c`);
  assert.equal(page.url, `${server.origin}/a?b=c`);
  assert.equal(page.finalUrl, `${server.origin}/a?b=c`);
  assert.equal(page.status, 200);
  assert.equal(page.contentType, 'text/html');
  assert.equal(page.charset, 'UTF-8');
  assert.match(page.html, /Hello, world/);
  assert.equal(page.bytes, Buffer.byteLength(page.html));
  assert.deepEqual(page.redirects, []);
  // Still only http and https, and never credentials.
  await refusal(f.fetch('file:///etc/passwd'), 'unsupported_scheme');
  await refusal(f.fetch(`http://a:b@127.0.0.1:${server.port}/`), 'credentials_in_url');
});

test('sends a User-Agent and an Accept for HTML, and no cookies', async () => {
  let seen: http.IncomingHttpHeaders = {};
  const server = await serve((req, res) => {
    seen = req.headers;
    html('<p>x</p>')(req, res);
  });
  const f = fetcher({ allowPrivateNetworks: true, userAgent: 'TestBot/1.0 (+https://example.test/bot)' });
  await f.fetch(server.origin);
  assert.equal(seen['user-agent'], 'TestBot/1.0 (+https://example.test/bot)');
  assert.match(seen.accept ?? '', /^text\/html/);
  assert.equal(seen.cookie, undefined);
  assert.equal(seen.authorization, undefined);
});

test('redirects are followed and recorded, each hop re-checked', async () => {
  const server = await serve((req, res) => {
    const n = Number(req.url?.slice(1));
    if (n > 0) {
      res.writeHead(n % 2 ? 302 : 301, { location: `/${n - 1}` });
      res.end();
    } else html('<p>arrived</p>')(req, res);
  });
  const f = fetcher({ allowPrivateNetworks: true, maxRedirects: 3 });
  const page = await f.fetch(`${server.origin}/3`);
  assert.equal(page.finalUrl, `${server.origin}/0`);
  assert.deepEqual(page.redirects, [`${server.origin}/2`, `${server.origin}/1`, `${server.origin}/0`]);
  assert.match(page.html, /arrived/);
  const err = await refusal(f.fetch(`${server.origin}/4`), 'too_many_redirects');
  assert.equal(err.retryable, false);
});

test('a redirect loop stops at maxRedirects', async () => {
  const server = await serve((_req, res) => {
    res.writeHead(307, { location: '/again' });
    res.end();
  });
  const f = fetcher({ allowPrivateNetworks: true });
  await refusal(f.fetch(`${server.origin}/`), 'too_many_redirects');
  assert.equal(server.requests, 6); // the first request and five redirects
});

test('a public-looking site redirecting to a private address is refused; the target never sees a connection', async () => {
  // 127.0.0.2 plays the public site (allowed by allowCidrs, reached through the name public.test);
  // 127.0.0.1 is the private target and stays blocked, as do the other redirect targets.
  const target = await serve(html('<p>internal admin</p>'), '127.0.0.1');
  const v6target = await serve(html('<p>internal admin</p>'), '::1').catch(() => null);
  const redirects: Record<string, string> = {
    '/to-literal': `http://127.0.0.1:${target.port}/admin`,
    '/to-localhost': `http://localhost:${target.port}/admin`,
    '/to-name': `http://internal.test:${target.port}/admin`,
    '/to-mapped': `http://[::ffff:127.0.0.1]:${target.port}/admin`,
    '/to-decimal': `http://2130706433:${target.port}/admin`,
    '/to-metadata': 'http://169.254.169.254/latest/meta-data/',
    '/to-v6': `http://[::1]:${v6target?.port ?? target.port}/admin`,
    '/to-file': 'file:///etc/passwd',
    '/to-port': 'http://public.test:8081/',
  };
  const site = await serve((req, res) => {
    const location = redirects[req.url ?? ''];
    if (location) {
      res.writeHead(302, { location });
      res.end();
    } else html('<p>public page</p>')(req, res);
  }, '127.0.0.2');
  const lookup = fakeLookup({ 'public.test': ['127.0.0.2'], 'internal.test': ['127.0.0.1'], localhost: ['127.0.0.1'] });
  const f = fetcher({ lookup, allowCidrs: ['127.0.0.2/32'], allowedPorts: [80, site.port, target.port] });

  const page = await f.fetch(`http://public.test:${site.port}/`);
  assert.match(page.html, /public page/);
  const expected: Record<string, RefusalReason> = {
    '/to-literal': 'blocked_address',
    '/to-localhost': 'blocked_address',
    '/to-name': 'blocked_address',
    '/to-mapped': 'blocked_address',
    '/to-decimal': 'blocked_address',
    '/to-metadata': 'blocked_address',
    '/to-v6': 'blocked_address',
    '/to-file': 'unsupported_scheme',
    '/to-port': 'port_not_allowed',
  };
  for (const [path, reason] of Object.entries(expected)) {
    const err = await refusal(f.fetch(`http://public.test:${site.port}${path}`), reason);
    assert.equal(err.url, new URL(redirects[path]!).href, path);
  }
  assert.equal(site.requests, 1 + Object.keys(expected).length);
  assert.equal(target.connections, 0);
  if (v6target) assert.equal(v6target.connections, 0);
});

test('a name whose answer changes to a private one between fetches is refused at lookup (DNS rebinding)', async () => {
  const server = await serve(html('<p>x</p>'), '127.0.0.2');
  const secret = await serve(html('<p>secret</p>'), '127.0.0.1');
  let answer = '127.0.0.2';
  const lookup = ((_host: string, options: dns.LookupOptions, cb: (...args: unknown[]) => void) =>
    options.all ? cb(null, [{ address: answer, family: 4 }]) : cb(null, answer, 4)) as unknown as LookupFunction;
  const f = fetcher({ lookup, allowCidrs: ['127.0.0.2/32'], allowedPorts: [server.port, secret.port] });
  await f.fetch(`http://rebind.test:${server.port}/`);
  answer = '127.0.0.1';
  await refusal(f.fetch(`http://rebind.test:${secret.port}/`), 'blocked_address');
  assert.equal(secret.connections, 0);
});

test('the connector re-checks the connected peer: an answer that passed the lookup filter but connects to loopback is refused', async () => {
  // DNS rebinding between the check and the connect: the answer reads as a public address when the
  // lookup filter checks it, and as 127.0.0.1 when the socket connects. Only the check of the
  // connected socket's peer address can refuse this one.
  const secret = await serve(html('<p>secret</p>'), '127.0.0.1');
  const secretServer = servers.at(-1)!;
  const options: dns.LookupOptions[] = [];
  const lookup = ((_host: string, o: dns.LookupOptions, cb: (...args: unknown[]) => void) => {
    options.push(o);
    // Without { all: true } the filter and the socket would share one string: nothing to rebind.
    if (!o.all) return cb(new Error('this test needs lookups with { all: true } (autoSelectFamily)'));
    let reads = 0;
    const answer = {
      family: 4,
      get address() {
        return reads++ === 0 ? '93.184.215.14' : '127.0.0.1';
      },
    };
    cb(null, [answer]);
  }) as unknown as LookupFunction;
  const f = fetcher({ lookup, allowedPorts: [secret.port] });
  const err = await refusal(f.fetch(`http://rebind.test:${secret.port}/`), 'blocked_address');
  assert.match(err.message, /blocked address 127\.0\.0\.1 for rebind\.test/);
  assert.ok(options.length > 0 && options.every((o) => o.all));
  // The socket did connect (so the lookup filter let it through), and was closed before a request.
  if (secret.connections === 0) await once(secretServer, 'connection');
  assert.equal(secret.connections, 1);
  assert.equal(secret.requests, 0);
});

test('without a lookup option, names are resolved by dns.lookup and its answers filtered', async (ctx) => {
  const server = await serve(html('<p>secret</p>'));
  const asked: string[] = [];
  // Installed before the fetcher is made: the default lookup is read then.
  ctx.mock.method(dns, 'lookup', fakeLookup({ 'intranet.test': ['127.0.0.1'] }, asked));
  const f = fetcher({ allowedPorts: [server.port] });
  const err = await refusal(f.fetch(`http://intranet.test:${server.port}/`), 'blocked_address');
  assert.match(err.message, /blocked address 127\.0\.0\.1 for intranet\.test/);
  assert.deepEqual(asked, ['intranet.test']);
  assert.equal(server.connections, 0, 'refused at lookup, before any connection');
});

test('the total time limit stops a server dripping one byte per second', async () => {
  let finished = false;
  const server = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    let sent = 0;
    const timer = setInterval(() => {
      res.write('x');
      if (++sent === 20) {
        clearInterval(timer);
        finished = true;
        res.end();
      }
    }, 1000);
    res.on('close', () => clearInterval(timer));
  });
  const f = fetcher({ allowPrivateNetworks: true, timeoutMs: 1500 });
  const started = performance.now();
  const err = await refusal(f.fetch(server.origin), 'timeout');
  const elapsed = performance.now() - started;
  assert.equal(err.retryable, true);
  assert.ok(elapsed >= 1400 && elapsed < 4000, `stopped after ${elapsed} ms`);
  assert.equal(finished, false);
});

test('the time limit also covers a server that never sends headers', async () => {
  const server = await serve(() => {});
  const f = fetcher({ allowPrivateNetworks: true, timeoutMs: 300 });
  const err = await refusal(f.fetch(server.origin), 'timeout');
  assert.equal(err.retryable, true);
});

test('a caller’s abort is passed through as the caller’s reason, not a refusal', async () => {
  const server = await serve(() => {});
  const f = fetcher({ allowPrivateNetworks: true });
  const controller = new AbortController();
  const pending = f.fetch(server.origin, { signal: controller.signal });
  controller.abort(new Error('shutting down'));
  await assert.rejects(pending, /shutting down/);
});

test('too large: refused early on Content-Length, and cut off while streaming without it', async () => {
  const total = 50 * 1024 * 1024;
  let streamed = 0;
  let streamClosed: Promise<unknown> = Promise.resolve();
  const server = await serve((req, res) => {
    if (req.url === '/declared') {
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': String(total) });
      res.write('x'.repeat(1024));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' }); // chunked: no length to refuse early on
    streamClosed = once(res, 'close');
    const chunk = Buffer.alloc(64 * 1024, 'y');
    const pump = () => {
      while (streamed < total) {
        streamed += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  const f = fetcher({ allowPrivateNetworks: true, maxBytes: 100_000 });
  const declared = await refusal(f.fetch(`${server.origin}/declared`), 'too_large');
  assert.equal(declared.retryable, false);
  assert.match(declared.message, /content-length/);
  const cut = await refusal(f.fetch(`${server.origin}/chunked`), 'too_large');
  assert.equal(cut.retryable, false);
  assert.match(cut.message, /body exceeds 100000 bytes/);
  await streamClosed; // the fetcher hung up on the server mid-body
  assert.ok(streamed < total / 10, `the server wrote ${streamed} of ${total} bytes`);
});

test('a body of exactly maxBytes is accepted', async () => {
  const server = await serve(html('z'.repeat(1000)));
  const f = fetcher({ allowPrivateNetworks: true, maxBytes: 1000 });
  assert.equal((await f.fetch(server.origin)).bytes, 1000);
});

test('only HTML: other content types are refused', async () => {
  const types: Record<string, string | undefined> = {
    '/pdf': 'application/pdf',
    '/json': 'application/json',
    '/png': 'image/png',
    '/text': 'text/plain',
    '/none': undefined,
  };
  const server = await serve((req, res) => {
    const type = types[req.url ?? ''];
    res.writeHead(200, type ? { 'content-type': type } : {});
    res.end('%PDF-1.7');
  });
  const f = fetcher({ allowPrivateNetworks: true });
  for (const path of Object.keys(types)) {
    const err = await refusal(f.fetch(`${server.origin}${path}`), 'not_html');
    assert.equal(err.retryable, false);
  }
  const xhtml = await serve(
    html('<html xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></html>', 'application/xhtml+xml'),
  );
  assert.equal((await f.fetch(xhtml.origin)).contentType, 'application/xhtml+xml');
  const upper = await serve(html('<p>ok</p>', 'Text/HTML; Charset="UTF-8"'));
  assert.equal((await f.fetch(upper.origin)).contentType, 'text/html');
});

test('HTTP errors: 4xx not retryable except 408 and 429, 5xx retryable, status kept', async () => {
  const server = await serve((req, res) => {
    res.writeHead(Number(req.url?.slice(1)), { 'content-type': 'text/html' });
    res.end('<p>error page</p>');
  });
  const f = fetcher({ allowPrivateNetworks: true });
  const cases: Array<[number, boolean]> = [
    [400, false],
    [401, false],
    [403, false],
    [404, false],
    [410, false],
    [408, true],
    [429, true],
    [500, true],
    [502, true],
    [503, true],
    [304, false],
  ];
  for (const [status, retryable] of cases) {
    const err = await refusal(f.fetch(`${server.origin}/${status}`), 'http_error');
    assert.equal(err.status, status);
    assert.equal(err.retryable, retryable, String(status));
    assert.match(err.userMessage, new RegExp(String(status)));
  }
  const notFound = await refusal(f.fetch(`${server.origin}/404`), 'http_error');
  assert.equal(notFound.userMessage, "That page wasn't found (error 404). Please check the link.");
});

test('network errors are retryable: connection refused, unknown name, connection reset', async () => {
  const closed = await serve(() => {});
  const port = closed.port;
  const server = servers.at(-1)!;
  server.close();
  await once(server, 'close');
  const reset = await serve((req) => req.socket.destroy());
  const f = fetcher({ allowPrivateNetworks: true, lookup: fakeLookup({}) });
  for (const url of [`http://127.0.0.1:${port}/`, 'http://no-such-host.test/', reset.origin]) {
    const err = await refusal(f.fetch(url), 'network_error');
    assert.equal(err.retryable, true, url);
  }
});

test('charset from the header: windows-1252 labelled iso-8859-1', async () => {
  // "café “quoted” – naïve" in windows-1252 (WHATWG reads iso-8859-1 as windows-1252).
  const bytes = Buffer.concat([
    Buffer.from('<!doctype html><title>t</title><p>caf'),
    Buffer.from([0xe9, 0x20, 0x93]),
    Buffer.from('quoted'),
    Buffer.from([0x94, 0x20, 0x96, 0x20]),
    Buffer.from('na'),
    Buffer.from([0xef]),
    Buffer.from('ve</p>'),
  ]);
  const server = await serve((req, res) => {
    res.writeHead(200, { 'content-type': req.url === '/meta' ? 'text/html' : 'text/html; charset=iso-8859-1' });
    if (req.url === '/meta') res.write('<meta charset="windows-1252">');
    res.end(bytes);
  });
  const f = fetcher({ allowPrivateNetworks: true });
  const page = await f.fetch(server.origin);
  assert.equal(page.charset, 'windows-1252');
  assert.match(page.html, /café “quoted” – naïve/);
  const meta = await f.fetch(`${server.origin}/meta`);
  assert.equal(meta.charset, 'windows-1252');
  assert.match(meta.html, /café “quoted” – naïve/);
});

test('charset from <meta>: Shift_JIS and windows-1251 (http-equiv)', async () => {
  // 日本語のページ in Shift_JIS
  const sjis = Buffer.from([0x93, 0xfa, 0x96, 0x7b, 0x8c, 0xea, 0x82, 0xcc, 0x83, 0x79, 0x81, 0x5b, 0x83, 0x57]);
  // Привет, мир in windows-1251
  const cp1251 = Buffer.from([0xcf, 0xf0, 0xe8, 0xe2, 0xe5, 0xf2, 0x2c, 0x20, 0xec, 0xe8, 0xf0]);
  const server = await serve((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    if (req.url === '/sjis') {
      res.end(
        Buffer.concat([
          Buffer.from('<html><head><meta charset="Shift_JIS"></head><body><p>'),
          sjis,
          Buffer.from('</p>'),
        ]),
      );
    } else {
      res.end(
        Buffer.concat([
          Buffer.from('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"><p>'),
          cp1251,
          Buffer.from('</p>'),
        ]),
      );
    }
  });
  const f = fetcher({ allowPrivateNetworks: true });
  const japanese = await f.fetch(`${server.origin}/sjis`);
  assert.equal(japanese.charset, 'Shift_JIS');
  assert.match(japanese.html, /<p>日本語のページ<\/p>/);
  const russian = await f.fetch(`${server.origin}/cp1251`);
  assert.equal(russian.charset, 'windows-1251');
  assert.match(russian.html, /Привет, мир/);
});

test('charset: a BOM wins over the header; undeclared UTF-8 is read as UTF-8, undeclared bytes as windows-1252', async () => {
  const server = await serve((req, res) => {
    if (req.url === '/bom') {
      res.writeHead(200, { 'content-type': 'text/html; charset=windows-1252' });
      res.end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<p>Grüße</p>')]));
    } else if (req.url === '/utf8') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(Buffer.from('<p>Grüße — ok</p>'));
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(Buffer.concat([Buffer.from('<p>Gr'), Buffer.from([0xfc, 0xdf]), Buffer.from('e</p>')]));
    }
  });
  const f = fetcher({ allowPrivateNetworks: true });
  const bom = await f.fetch(`${server.origin}/bom`);
  assert.equal(bom.charset, 'UTF-8');
  assert.equal(bom.html, '<p>Grüße</p>');
  const utf8 = await f.fetch(`${server.origin}/utf8`);
  assert.equal(utf8.charset, 'UTF-8');
  assert.equal(utf8.html, '<p>Grüße — ok</p>');
  const legacy = await f.fetch(`${server.origin}/legacy`);
  assert.equal(legacy.charset, 'windows-1252');
  assert.equal(legacy.html, '<p>Grüße</p>');
});

test('gzip is decompressed, and the limit counts decompressed bytes', async () => {
  const { gzipSync } = await import('node:zlib');
  const page = `<p>${'compressible '.repeat(20_000)}</p>`;
  const server = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip' });
    res.end(gzipSync(page));
  });
  const ok = await fetcher({ allowPrivateNetworks: true }).fetch(server.origin);
  assert.equal(ok.html, page);
  await refusal(fetcher({ allowPrivateNetworks: true, maxBytes: 100_000 }).fetch(server.origin), 'too_large');
});

test('default options refuse a non-standard port before anything else', async () => {
  const server = await serve(html('<p>x</p>'));
  const f = fetcher({ allowCidrs: ['127.0.0.1/32'] });
  await refusal(f.fetch(server.origin), 'port_not_allowed');
  assert.equal(server.connections, 0);
});

test('an IPv4-mapped IPv6 address is judged as the IPv4 address it carries', () => {
  assert.equal(isPublicAddress('::ffff:8.8.8.8'), true);
  assert.equal(isPublicAddress('::ffff:127.0.0.1'), false);
  assert.equal(isPublicAddress('::ffff:10.0.0.1'), false);
});

test('without a port in the URL, the scheme’s own port (80, 443) must be allowed', async () => {
  await refusal(fetcher({ allowedPorts: [443] }).fetch('http://public.example/'), 'port_not_allowed');
  await refusal(fetcher({ allowedPorts: [80] }).fetch('https://public.example/'), 'port_not_allowed');
});

/**
 * The connections `server` has accepted, counted after a probe connection of our own was accepted:
 * connections are accepted in the order they were made, so one the fetcher opened (and dropped)
 * before the probe is already counted. Without this, "no connection was made" could pass only
 * because the server had not accepted it yet.
 */
async function acceptedBefore(server: TestServer, httpServer: http.Server): Promise<number> {
  const accepted = once(httpServer, 'connection');
  const probe = net.connect(server.port, '127.0.0.1');
  probe.on('error', () => {});
  await accepted;
  probe.destroy();
  return server.connections - 1;
}

test('a name that does not resolve, or resolves to nothing, is a network error (retryable), not a blocked address', async () => {
  const unknown = fetcher({ lookup: fakeLookup({}) });
  const err = await refusal(unknown.fetch('http://no-such-host.test/'), 'network_error');
  assert.equal(err.retryable, true);
  assert.match(err.message, /ENOTFOUND no-such-host\.test/);
  // A lookup that answers neither an error nor an address.
  const empty = ((_host: string, _o: dns.LookupOptions, cb: (...args: unknown[]) => void) =>
    cb(null, undefined)) as unknown as LookupFunction;
  const nothing = await refusal(fetcher({ lookup: empty }).fetch('http://empty.test/'), 'network_error');
  assert.equal(nothing.retryable, true);
  assert.match(nothing.message, /no address for empty\.test/);
});

test('lookups without { all: true } (family auto-selection off) are filtered too', async (ctx) => {
  const site = await serve(html('<p>public page</p>'), '127.0.0.2');
  const secret = await serve(html('<p>secret</p>'), '127.0.0.1');
  const secretServer = servers.at(-1)!;
  const seen: dns.LookupOptions[] = [];
  const table = fakeLookup({ 'public.test': ['127.0.0.2'], 'rebind.test': ['127.0.0.1'] });
  const lookup = ((host: string, o: dns.LookupOptions, cb: (...args: unknown[]) => void) => {
    seen.push(o);
    (table as unknown as (h: string, o: dns.LookupOptions, cb: (...args: unknown[]) => void) => void)(host, o, cb);
  }) as unknown as LookupFunction;
  const autoSelect = net.getDefaultAutoSelectFamily();
  net.setDefaultAutoSelectFamily(false);
  ctx.after(() => net.setDefaultAutoSelectFamily(autoSelect));
  const f = fetcher({ lookup, allowCidrs: ['127.0.0.2/32'], allowedPorts: [site.port, secret.port] });
  assert.match((await f.fetch(`http://public.test:${site.port}/`)).html, /public page/);
  const err = await refusal(f.fetch(`http://rebind.test:${secret.port}/`), 'blocked_address');
  assert.match(err.message, /blocked address 127\.0\.0\.1 for rebind\.test/);
  assert.ok(seen.length >= 2 && seen.every((o) => !o.all), 'the lookups were single-answer ones');
  assert.equal(await acceptedBefore(secret, secretServer), 0, 'refused at lookup, before any connection');
});

test('an IP literal allowed by allowCidrs is connected to; the address checks use the same rule', async () => {
  const site = await serve(html('<p>allowed literal</p>'), '127.0.0.2');
  const f = fetcher({ allowCidrs: ['127.0.0.2/32'], allowedPorts: [site.port] });
  const page = await f.fetch(`http://127.0.0.2:${site.port}/`);
  assert.match(page.html, /allowed literal/);
  assert.equal(site.requests, 1);
  await refusal(f.fetch(`http://127.0.0.3:${site.port}/`), 'blocked_address');
});

test('allowPrivateNetworks still resolves names with the lookup it is given', async () => {
  const server = await serve(html('<p>dev page</p>'));
  const calls: string[] = [];
  const f = fetcher({ allowPrivateNetworks: true, lookup: fakeLookup({ 'dev.test': ['127.0.0.1'] }, calls) });
  assert.match((await f.fetch(`http://dev.test:${server.port}/`)).html, /dev page/);
  assert.deepEqual(calls, ['dev.test']);
});

test('each refusal names what was refused, and the URL it refused', async () => {
  const f = fetcher({ lookup: fakeLookup({}) });
  const long = `not a url ${'x'.repeat(300)}`;
  const invalid = await refusal(f.fetch(long), 'invalid_url');
  assert.equal(invalid.message, `not a valid URL: ${long.slice(0, 200)}`);
  assert.equal(invalid.url, long);
  const cases: Array<[string, RefusalReason, string]> = [
    ['ftp://example.com/x', 'unsupported_scheme', 'scheme ftp: is not http or https'],
    ['http://user:pass@example.com/', 'credentials_in_url', 'the URL carries credentials'],
    ['http://10.0.0.1/', 'blocked_address', 'blocked address 10.0.0.1'],
    ['http://[fd00::1]/', 'blocked_address', 'blocked address fd00::1'],
    ['http://LocalHost./', 'blocked_address', 'blocked host localhost.'],
    ['http://example.com:8080/', 'port_not_allowed', 'port 8080 is not allowed'],
    ['https://example.com:8443/', 'port_not_allowed', 'port 8443 is not allowed'],
  ];
  for (const [url, reason, message] of cases) {
    const err = await refusal(f.fetch(url), reason);
    assert.equal(err.message, message, url);
    assert.equal(err.url, new URL(url).href, url);
  }
});
