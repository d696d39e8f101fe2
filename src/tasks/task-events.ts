// Typed events of the push route, so tests await what happened instead of sleeping.
import { EventEmitter } from 'node:events';

export interface RunEvent {
  task: string;
  key: string;
  runId: number | undefined;
  attempt: number | undefined;
}

export interface TaskEventMap {
  'run:claimed': [RunEvent];
  'run:succeeded': [RunEvent & { durationMs: number }];
  'run:failed': [RunEvent & { error: string }];
  'run:dead': [RunEvent & { error: string }];
  'run:duplicate': [RunEvent];
  'run:busy': [RunEvent];
  /** A stale attempt tried to finish a run another delivery had taken over. */
  'run:fenced': [RunEvent];
}

export class TaskEvents extends EventEmitter<TaskEventMap> {
  /** Resolves with the next event of this name that matches. */
  waitFor<E extends keyof TaskEventMap>(
    event: E,
    predicate: (...args: TaskEventMap[E]) => boolean = () => true,
  ): Promise<TaskEventMap[E][0]> {
    return new Promise((resolve) => {
      const listener = (...args: TaskEventMap[E]) => {
        if (!predicate(...args)) return;
        (this.off as (e: E, l: typeof listener) => void)(event, listener);
        resolve(args[0]);
      };
      (this.on as (e: E, l: typeof listener) => void)(event, listener);
    });
  }
}
