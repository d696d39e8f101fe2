// The journal under the data directory: an append resolves only once its line is on disk, a
// torn last line (a kill mid-write) is dropped on replay, and opening compacts into a snapshot.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { emptyState, openJournal } from '../src/journal.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'emulator-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const journalFiles = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('journal-'));

test('an append resolves only once its line is in the file; appends made together share one sync', async (t) => {
  const dir = tempDir(t);
  const { journal } = await openJournal(dir, emptyState, () => {});
  t.after(() => journal.close());
  const file = path.join(dir, journalFiles(dir)[0]!);
  const appends = Array.from({ length: 50 }, (_, i) => {
    const pending = journal.append({ t: 'task', task: { name: `task-${i}` } });
    assert.ok(pending, 'a file journal gives a promise to wait on');
    return pending;
  });
  assert.equal(readFileSync(file, 'utf8'), '', 'nothing is written within the turn that appended');
  const seen: number[] = [];
  await Promise.all(
    appends.map((p, i) =>
      p.then(() => {
        assert.match(readFileSync(file, 'utf8'), new RegExp(`"task-${i}"`));
        seen.push(i);
      }),
    ),
  );
  assert.equal(seen.length, 50);
  assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 50);
});

test('replay drops a torn last line, applies deletions, and compacts into a new snapshot', async (t) => {
  const dir = tempDir(t);
  const first = await openJournal(dir, emptyState, () => {});
  await first.journal.append({ t: 'queue', queue: { name: 'q' } });
  await first.journal.append({ t: 'task', task: { name: 'q/tasks/a' } });
  await first.journal.append({ t: 'task', task: { name: 'q/tasks/b' } });
  await first.journal.append({ t: 'task-deleted', name: 'q/tasks/a', until: 123 });
  await first.journal.close();
  const [file] = journalFiles(dir);
  appendFileSync(path.join(dir, file!), '{"t":"task","task":{"name":"q/tasks/torn"'); // killed mid-write

  const second = await openJournal(dir, emptyState, () => {});
  t.after(() => second.journal.close());
  assert.deepEqual(second.state.queues, [{ name: 'q' }]);
  assert.deepEqual(second.state.tasks, [{ name: 'q/tasks/b' }]);
  assert.deepEqual(second.state.taskTombstones, [['q/tasks/a', 123]]);
  assert.deepEqual(journalFiles(dir), ['journal-2.log'], 'the replayed journal is folded into the snapshot');
  const snapshot = JSON.parse(readFileSync(path.join(dir, 'snapshot.json'), 'utf8'));
  assert.equal(snapshot.generation, 2);
  assert.deepEqual(snapshot.state.tasks, [{ name: 'q/tasks/b' }]);
});
