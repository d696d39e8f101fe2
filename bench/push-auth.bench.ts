// Push authentication alone (createPushAuthenticator in `oidc` mode, in process, no HTTP): one
// Cloud Tasks-shaped token presented again and again, with the verified-token cache and without
// it (tokenCacheSize 0: the RS256 check on every request). The JWKS is served on loopback by the
// tests' issuer and fetched once, so neither side pays the network.
//   node bench/push-auth.bench.ts [--runs 5] [--calls 20000] [--concurrency 1]
import { parseArgs } from 'node:util';
import { systemClock } from '../src/clock.ts';
import { createPushAuthenticator } from '../src/tasks/push-auth.ts';
import { INVOKER, startTestIssuer } from '../test/helpers/test-issuer.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    calls: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '1' },
  },
});
const runs = Number(values.runs);
const calls = Number(values.calls);
const concurrency = Number(values.concurrency);
const audience = 'https://svc.example.run.app';

const issuer = await startTestIssuer({ audience, nowSeconds: () => Math.floor(Date.now() / 1000) });
const headers = { authorization: `Bearer ${await issuer.token()}` };

/** Wall-clock and CPU (all threads: WebCrypto verifies on the thread pool) µs per call, per run. */
async function measure(cacheSize: number): Promise<{ wall: number[]; cpu: number[] }> {
  const auth = createPushAuthenticator({
    mode: 'oidc',
    audience,
    invokerEmail: INVOKER,
    issuers: [issuer.issuer],
    jwksUrl: issuer.jwksUrl,
    clock: systemClock,
    tokenCacheSize: cacheSize,
  });
  const once = async () => {
    const r = await auth.authenticate(headers);
    if (!r.ok) throw new Error(`refused: ${r.reason}`);
  };
  for (let i = 0; i < 500; i++) await once(); // JWKS fetched, key imported, JIT warm
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let run = 0; run < runs; run++) {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < calls) await once();
      }),
    );
    wall.push(((performance.now() - started) * 1000) / calls);
    const used = process.cpuUsage(cpuBefore);
    cpu.push((used.user + used.system) / calls);
  }
  return { wall, cpu };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const uncached = await measure(0);
const cached = await measure(1024);
const row = (label: string, m: { wall: number[]; cpu: number[] }) =>
  `| ${label} | ${median(m.wall).toFixed(1)} | ${Math.round(1e6 / median(m.wall)).toLocaleString('en')} | ${median(m.cpu).toFixed(1)} | ${m.wall.map((u) => u.toFixed(1)).join(', ')} |`;
console.log(`${runs} runs of ${calls} calls, ${concurrency} in flight, Node ${process.version}\n`);
console.log('| authenticator | wall µs per call (median) | calls/s | CPU µs per call (median) | wall µs, every run |');
console.log('|---|---|---|---|---|');
console.log(row('RS256 check every time (tokenCacheSize 0)', uncached));
console.log(row('verified-token cache (default)', cached));
console.log(
  `\nratios (uncached / cached): wall ${(median(uncached.wall) / median(cached.wall)).toFixed(1)}×, CPU ${(median(uncached.cpu) / median(cached.cpu)).toFixed(1)}×`,
);
await issuer.close();
