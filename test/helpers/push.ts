// Sends a task push the way Cloud Tasks does: POST, JSON body, OIDC bearer token, X-CloudTasks-* headers.
import type { FastifyInstance } from 'fastify';
import type { TestIssuer } from './test-issuer.ts';

export interface PushOptions {
  token?: string | null;
  headers?: Record<string, string>;
  retryCount?: number;
  taskName?: string;
  rawBody?: string;
}

export async function push(
  app: FastifyInstance,
  issuer: TestIssuer,
  task: string,
  payload: unknown,
  o: PushOptions = {},
) {
  const token = o.token === undefined ? await issuer.token() : o.token;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'Google-Cloud-Tasks',
    'x-cloudtasks-queuename': 'q',
    'x-cloudtasks-taskname': o.taskName ?? 'task-1',
    'x-cloudtasks-taskretrycount': String(o.retryCount ?? 0),
    'x-cloudtasks-taskexecutioncount': String(o.retryCount ?? 0),
    'x-cloudtasks-tasketa': '1772366400.5',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...o.headers,
  };
  const response = await app.inject({
    method: 'POST',
    url: `/tasks/${task}`,
    headers,
    payload: o.rawBody ?? JSON.stringify(payload),
  });
  return { status: response.statusCode, outcome: response.headers['x-task-outcome'], body: response.json(), response };
}

/** A promise and the function that settles it, to hold a handler at a chosen point. */
export function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    open = r;
  });
  return { promise, open };
}
