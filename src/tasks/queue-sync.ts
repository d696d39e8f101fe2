// `queues sync`: makes the declared queues exist in Cloud Tasks with the declared settings, and
// says what it changed. Queues it does not declare are reported and left alone (deleting a queue
// drops its tasks and blocks its name for days).
import type { CloudTasksClient, protos } from '@google-cloud/tasks';
import type { QueueDefinition } from './registry.ts';

type Queue = protos.google.cloud.tasks.v2.IQueue;
type Duration = protos.google.protobuf.IDuration;

export interface SyncChange {
  name: string;
  action: 'create' | 'update' | 'unchanged' | 'delete' | 'foreign';
  /** Human-readable field changes: "rateLimits.maxDispatchesPerSecond: 500 → 5". */
  details: string[];
}

const NOT_FOUND = 5;

/** Each declared field as [update-mask path, declared value, value read from a queue]. */
function fields(def: QueueDefinition): Array<[string, number, (q: Queue) => number | undefined]> {
  const out: Array<[string, number, (q: Queue) => number | undefined]> = [];
  const r = def.rateLimits ?? {};
  const c = def.retryConfig ?? {};
  const add = (path: string, value: number | undefined, read: (q: Queue) => number | undefined) => {
    if (value !== undefined) out.push([path, value, read]);
  };
  add('rate_limits.max_dispatches_per_second', r.maxDispatchesPerSecond, (q) =>
    num(q.rateLimits?.maxDispatchesPerSecond),
  );
  add('rate_limits.max_concurrent_dispatches', r.maxConcurrentDispatches, (q) =>
    num(q.rateLimits?.maxConcurrentDispatches),
  );
  add('retry_config.max_attempts', c.maxAttempts, (q) => num(q.retryConfig?.maxAttempts));
  add('retry_config.max_retry_duration', c.maxRetryDurationSeconds, (q) => seconds(q.retryConfig?.maxRetryDuration));
  add('retry_config.min_backoff', c.minBackoffSeconds, (q) => seconds(q.retryConfig?.minBackoff));
  add('retry_config.max_backoff', c.maxBackoffSeconds, (q) => seconds(q.retryConfig?.maxBackoff));
  add('retry_config.max_doublings', c.maxDoublings, (q) => num(q.retryConfig?.maxDoublings));
  return out;
}

function toQueue(name: string, def: QueueDefinition): Queue {
  const r = def.rateLimits ?? {};
  const c = def.retryConfig ?? {};
  return {
    name,
    rateLimits: {
      ...(r.maxDispatchesPerSecond !== undefined ? { maxDispatchesPerSecond: r.maxDispatchesPerSecond } : {}),
      ...(r.maxConcurrentDispatches !== undefined ? { maxConcurrentDispatches: r.maxConcurrentDispatches } : {}),
    },
    retryConfig: {
      ...(c.maxAttempts !== undefined ? { maxAttempts: c.maxAttempts } : {}),
      ...(c.maxRetryDurationSeconds !== undefined ? { maxRetryDuration: duration(c.maxRetryDurationSeconds) } : {}),
      ...(c.minBackoffSeconds !== undefined ? { minBackoff: duration(c.minBackoffSeconds) } : {}),
      ...(c.maxBackoffSeconds !== undefined ? { maxBackoff: duration(c.maxBackoffSeconds) } : {}),
      ...(c.maxDoublings !== undefined ? { maxDoublings: c.maxDoublings } : {}),
    },
  };
}

export async function syncQueues(
  client: Pick<
    CloudTasksClient,
    'getQueue' | 'createQueue' | 'updateQueue' | 'listQueues' | 'queuePath' | 'locationPath'
  >,
  target: { projectId: string; location: string },
  declared: readonly QueueDefinition[],
  options: { dryRun: boolean },
): Promise<SyncChange[]> {
  const changes: SyncChange[] = [];
  const parent = client.locationPath(target.projectId, target.location);
  for (const def of declared) {
    const name = client.queuePath(target.projectId, target.location, def.name);
    let existing: Queue | undefined;
    try {
      [existing] = await client.getQueue({ name });
    } catch (err) {
      if ((err as { code?: number }).code !== NOT_FOUND) throw err;
    }
    if (!existing) {
      if (!options.dryRun) await client.createQueue({ parent, queue: toQueue(name, def) });
      const details = fields(def).map(([path, value]) => `${camel(path)}: ${value}`);
      changes.push({ name: def.name, action: 'create', details });
      continue;
    }
    const differing = fields(def).filter(([, value, read]) => !same(read(existing), value));
    if (differing.length === 0) {
      changes.push({ name: def.name, action: 'unchanged', details: [] });
      continue;
    }
    if (!options.dryRun) {
      await client.updateQueue({ queue: toQueue(name, def), updateMask: { paths: differing.map(([path]) => path) } });
    }
    const details = differing.map(([path, value, read]) => `${camel(path)}: ${read(existing) ?? 'unset'} → ${value}`);
    changes.push({ name: def.name, action: 'update', details });
  }
  const [all] = await client.listQueues({ parent });
  const declaredNames = new Set(declared.map((d) => d.name));
  for (const q of all) {
    const short = String(q.name).split('/').pop() ?? '';
    if (!declaredNames.has(short))
      changes.push({ name: short, action: 'foreign', details: ['not declared here; left alone'] });
  }
  return changes;
}

export function formatChanges(kind: string, changes: readonly SyncChange[], dryRun: boolean): string {
  const sign = { create: '+', update: '~', unchanged: '=', delete: '-', foreign: '?' } as const;
  const verb = dryRun
    ? { create: 'would create', update: 'would update', delete: 'would delete' }
    : { create: 'created', update: 'updated', delete: 'deleted' };
  const lines = changes.map((c) => {
    const what = c.action === 'unchanged' ? 'unchanged' : c.action === 'foreign' ? 'not managed here' : verb[c.action];
    return [`${sign[c.action]} ${kind} ${c.name}: ${what}`, ...c.details.map((d) => `    ${d}`)].join('\n');
  });
  const changed = changes.filter((c) => c.action === 'create' || c.action === 'update' || c.action === 'delete');
  lines.push(
    changed.length === 0
      ? `no changes: every declared ${kind} is up to date`
      : `${changed.length} ${kind}(s) ${dryRun ? 'would change (dry run: nothing was changed)' : 'changed'}`,
  );
  return lines.join('\n');
}

const num = (v: number | string | null | undefined) => (v === null || v === undefined ? undefined : Number(v));
const seconds = (d: Duration | null | undefined) =>
  d ? Number(d.seconds ?? 0) + Number(d.nanos ?? 0) / 1e9 : undefined;
const duration = (s: number): Duration => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const same = (a: number | undefined, b: number) => a !== undefined && Math.abs(a - b) < 1e-6;
const camel = (path: string) => path.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
