-- 0009: the trace an outbox row continues. A task written in a transaction is sent after commit,
-- by the relay (maybe another instance, maybe after a restart), no longer inside the request that
-- enqueued it: the row keeps that request's W3C traceparent, and the relay sets it on the Cloud
-- Tasks task, so the run the task causes joins the same trace. NULL for rows from before.

ALTER TABLE task_outbox ADD COLUMN traceparent text;
