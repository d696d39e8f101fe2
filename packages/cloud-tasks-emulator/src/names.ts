// Resource names of Cloud Tasks and Cloud Scheduler (task.proto, queue.proto, job.proto): their
// shapes, and the short IDs the dispatch headers carry.

const PROJECT = '[A-Za-z0-9\\-:.]+';
const LOCATION = '[A-Za-z0-9_-]+';

const LOCATION_NAME = new RegExp(`^projects/(${PROJECT})/locations/(${LOCATION})$`);
const QUEUE_NAME = new RegExp(`^(projects/${PROJECT}/locations/${LOCATION})/queues/([A-Za-z0-9-]{1,100})$`);
const TASK_NAME = /^(.+)\/tasks\/([^/]*)$/;
const TASK_ID = /^[A-Za-z0-9_-]{1,500}$/;
const JOB_NAME = new RegExp(`^(projects/${PROJECT}/locations/${LOCATION})/jobs/([A-Za-z0-9_-]{1,500})$`);

export function isLocationName(name: string): boolean {
  return LOCATION_NAME.test(name);
}

export function parseQueueName(name: string): { parent: string; id: string } | undefined {
  const m = QUEUE_NAME.exec(name);
  return m ? { parent: m[1]!, id: m[2]! } : undefined;
}

/** Splits projects/…/queues/Q/tasks/T into the queue name and the task ID, without judging either. */
export function splitTaskName(name: string): { queue: string; id: string } | undefined {
  const m = TASK_NAME.exec(name);
  return m ? { queue: m[1]!, id: m[2]! } : undefined;
}

export function isTaskId(id: string): boolean {
  return TASK_ID.test(id);
}

export function parseJobName(name: string): { parent: string; id: string } | undefined {
  const m = JOB_NAME.exec(name);
  return m ? { parent: m[1]!, id: m[2]! } : undefined;
}

/**
 * The project named by a malformed parent, for Cloud Tasks' "Permission denied on resource project X."
 * (recorded with parent "not-a-valid-parent" ⇒ X = "not-a-valid-parent").
 */
export function projectOfParent(parent: string): string {
  const m = /^projects\/([^/]+)/.exec(parent);
  return m ? m[1]! : parent;
}
