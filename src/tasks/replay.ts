// Replay of a dead or failed run (the CLI and the dashboard): the run becomes claimable again and
// its task is enqueued under a new Cloud Tasks task id, so Cloud Tasks counts a new series of
// attempts, while the idempotency key (and so the run) stays the same.
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { TaskEnqueuer } from './enqueue.ts';
import { type TaskRun, taskRuns } from './task-runs.repository.ts';

export async function replayRun(
  db: Db,
  enqueuer: TaskEnqueuer,
  runId: number,
  now: Date,
): Promise<{ run: TaskRun; taskName: string }> {
  const existing = await taskRuns.getRun(db, runId);
  if (!existing) throw new AppError('NOT_FOUND', `No run with id ${runId}.`);
  if (existing.status !== 'dead' && existing.status !== 'failed') {
    throw new AppError('CONFLICT', `Run ${runId} is ${existing.status}; only dead or failed runs can be replayed.`);
  }
  // Validate before changing anything: a payload that never matched the schema cannot be replayed.
  const prepared = enqueuer.prepare(existing.task, existing.payload, {
    key: existing.idempotencyKey,
    series: existing.replays + 1,
  });
  const run = await taskRuns.markForReplay(db, runId, now);
  if (!run) throw new AppError('CONFLICT', `Run ${runId} changed while being replayed; try again.`);
  const sent = await enqueuer.send(prepared);
  return { run, taskName: sent.taskName };
}
