// Celery's enqueue and drain phases (bench/celery.bench.ts) run in a process of their own, for the
// benchmarks that compare with Celery in the same window: emulator.bench.ts --with-celery and
// push-path.bench.ts --with-celery.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface CeleryPhase {
  phase: string;
  count: number;
  seconds: number;
  perSecond: number;
  workerCpuUs?: number;
  redisCpuUs?: number;
}

/** One run of bench/celery.bench.ts with `tasks` tasks: its enqueue and drain phases. */
export async function celeryRound(tasks: number): Promise<{ enqueue: CeleryPhase; drain: CeleryPhase }> {
  const script = new URL('./celery.bench.ts', import.meta.url).pathname;
  const proc = spawn(process.execPath, [script, '--tasks', String(tasks), '--skip-end-to-end'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  const [code] = (await once(proc, 'exit')) as [number | null];
  const phases = out
    .split('\n')
    .filter((line) => line.startsWith('{"phase"'))
    .map((line) => JSON.parse(line) as CeleryPhase);
  const enqueue = phases.find((p) => p.phase.startsWith('enqueue'));
  const drain = phases.find((p) => p.phase.startsWith('drain'));
  if (code !== 0 || !enqueue || !drain) throw new Error(`celery bench failed (exit ${code}):\n${out}`);
  return { enqueue, drain };
}
