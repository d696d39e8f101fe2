#!/usr/bin/env bash
# Runs the built image the way Cloud Run does and checks it: `backend migrate` as a one-off job
# against PostgreSQL, then the service in cloud mode (Google unreachable, no credentials, read-only
# root file system): /healthz and /readyz answer 200, it runs as a non-root user, a pushed
# health.check reports the queue backend degraded instead of crashing, and SIGTERM ends it with
# exit 0 within 10 s. Prints the image size and the time from container start to /readyz.
# Usage: scripts/container/check-image.sh [image, default localhost/backend:ci]
# Env: CHECK_PORT (default 18087), CHECK_PG (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/container/lib.sh
. scripts/container/lib.sh

image=${1:-localhost/backend:ci}
port=${CHECK_PORT:-18087}
pg=${CHECK_PG:-postgres://postgres@127.0.0.1:5432}
database=backend_image_check
name="backend-image-check-$$"
work=$(mktemp -d)
failures=0

# The flags this machine runs containers with (host network: no CNI bridge here).
# Google's API and metadata hosts resolve to this machine's loopback, where nothing answers: the
# check must show the service surviving Google being unreachable without sending a packet off it.
google_hosts=(cloudtasks.googleapis.com cloudscheduler.googleapis.com oauth2.googleapis.com www.googleapis.com
  metadata.google.internal cloudtrace.googleapis.com)
run_flags=(--network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --env-file "$work/env")
for host in "${google_hosts[@]}"; do run_flags+=(--add-host "$host:127.0.0.1"); done

cleanup() {
  podman_ rm --force --time 0 "$name" >/dev/null 2>&1 || true
  psql "$pg/postgres" -q -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

ok() { printf '  ok    %s\n' "$1"; }
fail() {
  printf '  FAIL  %s\n' "$1"
  failures=$((failures + 1))
}
now_ms() { date +%s%3N; }

podman_ image exists "$image" || { echo "error: no image $image (run scripts/container/build-image.sh)" >&2; exit 1; }
if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
  echo "error: something already listens on port $port (set CHECK_PORT)" >&2
  exit 1
fi

# A fresh database for each check.
PGOPTIONS=--client-min-messages=warning timeout 30 psql "$pg/postgres" -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database" >/dev/null

task_secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
# Cloud mode as on Cloud Run. No Google credentials can be found (no metadata server lookup), so
# Google's APIs are unreachable for the service; the task secret lets this script push a task.
cat >"$work/env" <<ENV
PORT=$port
DATABASE_URL=$pg/$database
TASKS_BACKEND=cloud
GCP_PROJECT_ID=backend-image-check
GCP_LOCATION=us-central1
PUBLIC_BASE_URL=https://backend-image-check.example.com
TASKS_INVOKER_SERVICE_ACCOUNT=tasks-invoker@backend-image-check.iam.gserviceaccount.com
TASKS_AUTH=oidc-or-secret
TASK_SECRET=$task_secret
SESSION_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 48)
METADATA_SERVER_DETECTION=none
GCE_METADATA_HOST=127.0.0.1:9
ENV

echo "checking $image (port $port, database $database)"

# 1. The migrate job, as a Cloud Run job runs it: the same image, other arguments.
if timeout 120 "${PODMAN[@]}" run --rm --read-only "${run_flags[@]}" "$image" migrate >"$work/migrate.log" 2>&1; then
  ok "backend migrate (one-off job) exit 0"
else
  fail "backend migrate exited non-zero:"
  sed 's/^/        /' "$work/migrate.log"
fi

# 2. The service, started detached; then /readyz is polled until it answers 200.
launched=$(now_ms)
timeout 120 "${PODMAN[@]}" run --detach --read-only --name "$name" "${run_flags[@]}" "$image" >/dev/null
ready_at=
deadline=$(($(now_ms) + 30000))
while [ "$(now_ms)" -lt "$deadline" ]; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/readyz" || true)
  if [ "$code" = 200 ]; then
    ready_at=$(now_ms)
    break
  fi
  [ "$(podman_ inspect --format '{{.State.Running}}' "$name")" = true ] || break
  sleep 0.01
done
started_at=$(podman_ inspect --format '{{.State.StartedAt.UnixMilli}}' "$name")
if [ -n "$ready_at" ]; then
  ok "/readyz 200: $((ready_at - started_at)) ms after the container started ($((ready_at - launched)) ms after podman run)"
else
  fail "/readyz did not answer 200 within 30 s; the service's output:"
  podman_ logs "$name" 2>&1 | tail -n 30 | sed 's/^/        /'
fi

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz" || true)
if [ "$code" = 200 ]; then ok "/healthz 200"; else fail "/healthz answered $code"; fi

uid=$(timeout 20 "${PODMAN[@]}" exec "$name" id -u || echo '?')
user=$(timeout 20 "${PODMAN[@]}" exec "$name" id -un || echo '?')
if [ "$uid" != 0 ] && [ "$uid" != '?' ]; then
  ok "runs as $user (uid $uid), not root"
else
  fail "runs as uid $uid"
fi

pid1=$(timeout 20 "${PODMAN[@]}" exec "$name" cat /proc/1/cmdline | tr '\0' ' ' || true)
case "$pid1" in
  "node bin/backend.js serve "*) ok "PID 1 is node itself: $pid1" ;;
  *) fail "PID 1 is '$pid1', expected node bin/backend.js serve" ;;
esac

# 3. SIGTERM, as Cloud Run sends it: node drains and exits 0 well before podman's 10 s SIGKILL.
stop_started=$(now_ms)
timeout 30 "${PODMAN[@]}" stop --time 10 "$name" >/dev/null || true
stop_ms=$(($(now_ms) - stop_started))
exit_code=$(podman_ inspect --format '{{.State.ExitCode}}' "$name")
if [ "$exit_code" = 0 ] && [ "$stop_ms" -lt 10000 ] && podman_ logs "$name" 2>&1 | grep -q '"shut down cleanly"'; then
  ok "SIGTERM: exit 0 and \"shut down cleanly\" in $stop_ms ms"
else
  fail "SIGTERM: exit code $exit_code after $stop_ms ms; the last lines:"
  podman_ logs "$name" 2>&1 | tail -n 10 | sed 's/^/        /'
fi

# 4. The same service again: a health.check pushed as Cloud Tasks would (with the task secret).
timeout 30 "${PODMAN[@]}" rm --force --time 0 "$name" >/dev/null
timeout 120 "${PODMAN[@]}" run --detach --read-only --name "$name" "${run_flags[@]}" "$image" >/dev/null
deadline=$(($(now_ms) + 30000))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/readyz" || true)" = 200 ]; do
  [ "$(now_ms)" -lt "$deadline" ] || break
  sleep 0.05
done
# A health.check pushed as Cloud Tasks would (with the task secret): the database is fine, the
# queue backend (Google) is not reachable: the run succeeds and records 'degraded'.
code=$(curl -s -o "$work/push.json" -w '%{http_code}' --max-time 40 -X POST \
  "http://127.0.0.1:$port/tasks/health.check" \
  -H 'content-type: application/json' -H 'user-agent: Google-Cloud-Tasks' \
  -H "x-task-secret: $task_secret" \
  -H 'x-cloudtasks-queuename: maintenance' -H 'x-cloudtasks-taskname: image-check-1' \
  -H 'x-cloudtasks-taskretrycount: 0' -H 'x-cloudtasks-taskexecutioncount: 0' \
  -H "x-cloudtasks-tasketa: $(date +%s)" -d '{}' || true)
status=$(timeout 10 psql "$pg/$database" -Atq -c "SELECT status FROM health_checks ORDER BY id DESC LIMIT 1" || true)
queue=$(timeout 10 psql "$pg/$database" -Atq \
  -c "SELECT c->>'ok' FROM health_checks, jsonb_array_elements(checks) c WHERE c->>'name' = 'queue backend' ORDER BY id DESC LIMIT 1" || true)
if [ "$code" = 200 ] && [ "$status" = degraded ] && [ "$queue" = false ]; then
  ok "health.check with Google unreachable: 200, status degraded (queue backend down, database up)"
else
  fail "health.check: HTTP $code, status '$status', queue backend ok '$queue': $(head -c 300 "$work/push.json" 2>/dev/null)"
fi
if [ "$(podman_ inspect --format '{{.State.Running}}' "$name")" = true ]; then
  ok "still running"
else
  fail "the service exited; the last lines:"
  podman_ logs "$name" 2>&1 | tail -n 12 | sed 's/^/        /'
fi

timeout 30 "${PODMAN[@]}" stop --time 10 "$name" >/dev/null 2>&1 || true

image_size=$(podman_ image inspect --format '{{.Size}}' "$image")
base=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | head -n 1)
base_size=$(podman_ image inspect --format '{{.Size}}' "docker.io/library/$base" 2>/dev/null || echo 0)
echo
echo "image $image: $((image_size / 1000000)) MB (base $base: $((base_size / 1000000)) MB)"
if [ "$failures" -gt 0 ]; then
  echo "container check: $failures check(s) failed" >&2
  exit 1
fi
echo "container check: all passed"
