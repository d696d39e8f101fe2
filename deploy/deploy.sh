#!/usr/bin/env bash
# Deploys the service to one Google Cloud project with gcloud: service accounts and their roles,
# Cloud SQL, Secret Manager, the Cloud Run service, and the migrate / queues sync / schedules sync
# jobs (run once each). Safe to run again: every resource is described before it is created, and
# what gcloud updates in place (deploys, IAM bindings) converges on what this file says.
# `--dry-run` prints every command and runs none (no gcloud, no account needed). See deploy/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
Usage: deploy/deploy.sh --project PROJECT [options]

  --project ID            Google Cloud project (or GCP_PROJECT_ID / GOOGLE_CLOUD_PROJECT); required
  --region REGION         Cloud Run, Cloud SQL, Cloud Tasks and Cloud Scheduler region (us-central1)
  --service NAME          Cloud Run service name; prefixes every other resource name (backend)
  --image IMAGE           container image (REGION-docker.pkg.dev/PROJECT/SERVICE/SERVICE:GIT_SHA)
  --build                 build and push the image with Cloud Build first
  --topology T            single: one public service, TASKS_AUTH=oidc (default)
                          split: a private tasks service (cloud-run-iam) + a public SERVICE-webhooks
  --sql-instance NAME     Cloud SQL instance (SERVICE-db)
  --sql-tier TIER         Cloud SQL machine type (db-custom-1-3840)
  --min-instances N       instances kept warm (1)
  --max-instances N       instances at most (8)
  --concurrency N         requests per instance (40)
  --timeout SECONDS       request timeout (longest task deadline + 60; refused if shorter)
  --public-url URL        the public URL when a custom domain fronts the service
  --dashboard-controls    let the service pause/resume/purge queues and run/pause schedules
  --dry-run               print every command, run none
  -h, --help              this text

Optional settings read from the environment (secrets are stored in Secret Manager, never printed):
  WHATSAPP_APP_SECRET WHATSAPP_ACCESS_TOKEN WHATSAPP_PHONE_NUMBER_ID STRIPE_WEBHOOK_SECRET
  STRIPE_SECRET_KEY STRIPE_PAYMENT_LINK_URL LLM_BASE_URL LLM_MODEL LLM_API_KEY OAUTH_CLIENT_ID OAUTH_CLIENT_SECRET
  ADMIN_EMAILS
EOF
}

die() {
  printf 'deploy.sh: %s\n' "$1" >&2
  exit "${2:-1}"
}

PROJECT="${GCP_PROJECT_ID:-${GOOGLE_CLOUD_PROJECT:-}}"
REGION="${GCP_LOCATION:-us-central1}"
SERVICE="backend"
IMAGE=""
BUILD=0
TOPOLOGY="single"
SQL_INSTANCE=""
SQL_TIER="db-custom-1-3840"
MIN_INSTANCES=1
MAX_INSTANCES=8
CONCURRENCY=40
TIMEOUT=""
PUBLIC_URL=""
DASHBOARD_CONTROLS=0
DRY_RUN=0

while (($# > 0)); do
  arg="$1"
  value=""
  if [[ "$arg" == --*=* ]]; then
    value="${arg#*=}"
    arg="${arg%%=*}"
  fi
  case "$arg" in
    --build | --dashboard-controls | --dry-run | -h | --help) ;;
    --*)
      if [[ -z "$value" ]]; then
        (($# >= 2)) || die "$arg needs a value (see --help)" 2
        value="$2"
        shift
      fi
      ;;
  esac
  case "$arg" in
    --project) PROJECT="$value" ;;
    --region) REGION="$value" ;;
    --service) SERVICE="$value" ;;
    --image) IMAGE="$value" ;;
    --build) BUILD=1 ;;
    --topology) TOPOLOGY="$value" ;;
    --sql-instance) SQL_INSTANCE="$value" ;;
    --sql-tier) SQL_TIER="$value" ;;
    --min-instances) MIN_INSTANCES="$value" ;;
    --max-instances) MAX_INSTANCES="$value" ;;
    --concurrency) CONCURRENCY="$value" ;;
    --timeout) TIMEOUT="$value" ;;
    --public-url) PUBLIC_URL="${value%/}" ;;
    --dashboard-controls) DASHBOARD_CONTROLS=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" 2 ;;
  esac
  shift
done

[[ -n "$PROJECT" ]] || die "--project is required (or GCP_PROJECT_ID): no default, so nothing lands in a project by accident" 2
[[ "$PROJECT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "--project $PROJECT: expected a project id (6-30 lowercase letters, digits, -)" 2
[[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "--region $REGION: expected a region such as us-central1" 2
[[ "$SERVICE" =~ ^[a-z][a-z0-9-]{0,13}[a-z0-9]$ ]] || die "--service $SERVICE: expected 2-15 lowercase letters, digits, - (it prefixes account names, 30 characters at most)" 2
[[ "$TOPOLOGY" == single || "$TOPOLOGY" == split ]] || die "--topology $TOPOLOGY: expected single or split" 2
for n in MIN_INSTANCES MAX_INSTANCES CONCURRENCY; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || die "${n,,}: expected a whole number, got ${!n}" 2
done
((CONCURRENCY >= 1 && CONCURRENCY <= 1000)) || die "--concurrency: Cloud Run allows 1-1000" 2
((MAX_INSTANCES >= 1 && MIN_INSTANCES <= MAX_INSTANCES)) || die "--min-instances must not exceed --max-instances" 2
[[ -z "$PUBLIC_URL" || "$PUBLIC_URL" =~ ^https://[^/?#]+$ ]] || die "--public-url: expected https://host with no path" 2
SQL_INSTANCE="${SQL_INSTANCE:-$SERVICE-db}"

# ---- Output: every command is printed before it runs ("+ …"), in a form that can be pasted.

say() { printf '%s\n' "$*"; }
quote() {
  local out="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[][A-Za-z0-9_./:=,@+%^-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  printf '%s' "${out% }"
}
# The printed form of a command, with any --password value hidden.
show() {
  local shown=() a
  for a in "$@"; do
    if [[ "$a" == --password=* ]]; then shown+=("--password=(hidden)"); else shown+=("$a"); fi
  done
  quote "${shown[@]}"
}
run() {
  say "+ $(show "$@")"
  ((DRY_RUN)) || "$@"
}
# Runs a command with a secret value on its stdin (never in argv, never printed).
run_stdin() {
  local value="$1"
  shift
  say "+ $(show "$@") <<< (secret value, not shown)"
  ((DRY_RUN)) || printf '%s' "$value" | "$@"
}
# True when the describe command finds the resource. In --dry-run nothing is asked: the check is
# printed and everything counts as absent, so the output shows every create.
exists() {
  if ((DRY_RUN)); then
    say "+ $(show "$@") || \\"
    return 1
  fi
  "$@" >/dev/null 2>&1
}
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
section() { printf '\n# ---- %s\n' "$1"; }
# IAM bindings: a service account created a moment ago can take a few seconds to be visible to
# IAM, so a binding is tried again (adding a binding that exists changes nothing).
run_binding() {
  say "+ $(show "$@")"
  ((DRY_RUN)) && return 0
  local attempt
  for attempt in 1 2 3 4 5; do
    if "$@" >/dev/null; then return 0; fi
    if ((attempt < 5)); then sleep 10; fi
  done
  die "failed 5 times: $(show "$@")"
}

# ---- What the code declares: the request timeout must cover the longest task's dispatch deadline
# (a handler runs inside its push request, and Cloud Run cuts a request at its timeout while Cloud
# Tasks waits for the deadline, then retries while the first attempt may still be running).

longest_deadline() {
  local max d
  max="$(grep -oE 'DEFAULT_DEADLINE_SECONDS = [0-9]+' "$ROOT/src/tasks/define-task.ts" | grep -oE '[0-9]+$')"
  while read -r d; do
    if ((d > max)); then max="$d"; fi
  done < <(grep -rhoE --include='*.task.ts' 'deadlineSeconds: [0-9]+' "$ROOT/src" | grep -oE '[0-9]+$')
  printf '%s' "$max"
}
DEADLINE="$(longest_deadline)"
[[ "$DEADLINE" =~ ^[0-9]+$ ]] || die "could not read the task deadlines from src/**/*.task.ts"
if [[ -z "$TIMEOUT" ]]; then TIMEOUT=$((DEADLINE + 60)); fi
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout: expected seconds" 2
((TIMEOUT >= DEADLINE)) || die "--timeout $TIMEOUT is shorter than the longest task deadline ($DEADLINE s in src/**/*.task.ts)" 2
((TIMEOUT <= 3600)) || die "--timeout: Cloud Run allows at most 3600 s" 2

if [[ -z "$IMAGE" ]]; then
  TAG="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || printf 'latest')"
  IMAGE="$REGION-docker.pkg.dev/$PROJECT/$SERVICE/$SERVICE:$TAG"
fi

# ---- Names

RUNTIME_SA="$SERVICE-runtime@$PROJECT.iam.gserviceaccount.com"
INVOKER_SA="$SERVICE-tasks-invoker@$PROJECT.iam.gserviceaccount.com"
SYNC_SA="$SERVICE-sync@$PROJECT.iam.gserviceaccount.com"
SQL_CONNECTION="$PROJECT:$REGION:$SQL_INSTANCE"
DB_NAME="$SERVICE"
DB_USER="$SERVICE"
WEBHOOKS_SERVICE="$SERVICE-webhooks"
secret_name() { printf '%s-%s' "$SERVICE" "$1"; }

export CLOUDSDK_CORE_DISABLE_PROMPTS=1
if ((DRY_RUN == 0)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
fi
P=(--project "$PROJECT")

mode=""
if ((DRY_RUN)); then mode=" [dry run: nothing is run]"; fi
say "# Deploying $SERVICE to project $PROJECT, region $REGION ($TOPOLOGY topology)$mode"
say "# image $IMAGE"
say "# longest task deadline ${DEADLINE} s (src/**/*.task.ts) -> request timeout ${TIMEOUT} s"

section "APIs"
apis=(run.googleapis.com cloudtasks.googleapis.com cloudscheduler.googleapis.com sqladmin.googleapis.com
  secretmanager.googleapis.com iam.googleapis.com)
if ((BUILD)); then apis+=(cloudbuild.googleapis.com artifactregistry.googleapis.com); fi
run gcloud services enable "${apis[@]}" "${P[@]}"

# Cloud Run's URLs are https://SERVICE-PROJECT_NUMBER.REGION.run.app, known before the first
# deploy: PUBLIC_BASE_URL (push URLs, OIDC audience, links in replies) is set on the first deploy.
if ((DRY_RUN)); then
  say "+ $(show gcloud projects describe "$PROJECT" --format='value(projectNumber)')"
  PROJECT_NUMBER="PROJECT_NUMBER"
else
  PROJECT_NUMBER="$(gcloud projects describe "$PROJECT" --format='value(projectNumber)')"
fi
run_url() { printf 'https://%s-%s.%s.run.app' "$1" "$PROJECT_NUMBER" "$REGION"; }
TASKS_URL="$(run_url "$SERVICE")"
if [[ "$TOPOLOGY" == split ]]; then PUBLIC_DEFAULT="$(run_url "$WEBHOOKS_SERVICE")"; else PUBLIC_DEFAULT="$TASKS_URL"; fi
PUBLIC_URL="${PUBLIC_URL:-$PUBLIC_DEFAULT}"

section "Service accounts"
ensure_sa() {
  local email="$1" name="$2"
  exists gcloud iam service-accounts describe "$email" "${P[@]}" ||
    run gcloud iam service-accounts create "${email%%@*}" --display-name="$name" "${P[@]}"
}
ensure_sa "$RUNTIME_SA" "$SERVICE: the Cloud Run service and the migrate job"
ensure_sa "$INVOKER_SA" "$SERVICE: identity in the OIDC tokens of tasks and scheduler jobs"
ensure_sa "$SYNC_SA" "$SERVICE: the queues sync and schedules sync jobs"

section "Project roles (each account gets only what its code calls)"
grant_project() {
  run_binding gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$1" --role="$2" --condition=None --quiet
}
# Runtime: createTask from the outbox relay, `ctx.enqueue` and `runs replay`.
grant_project "$RUNTIME_SA" roles/cloudtasks.enqueuer
# Runtime: health.check probes the queue backend with getQueue (queues.get is not in the enqueuer
# role); the operators' dashboard lists queues. Read-only.
grant_project "$RUNTIME_SA" roles/cloudtasks.viewer
# Runtime: the dashboard reads the schedules (jobs.get/list). Read-only.
grant_project "$RUNTIME_SA" roles/cloudscheduler.viewer
# Runtime: the Cloud SQL connection (the /cloudsql socket Cloud Run mounts) for the service and
# the migrate job; the database password is the second lock.
grant_project "$RUNTIME_SA" roles/cloudsql.client
if ((DASHBOARD_CONTROLS)); then
  # Opt-in: the dashboard's pause / resume / purge of queues and run-now / pause / resume of
  # schedules. Off by default: the internet-facing service should not be able to stop the queues.
  grant_project "$RUNTIME_SA" roles/cloudtasks.queueAdmin
  grant_project "$RUNTIME_SA" roles/cloudscheduler.admin
fi
# Sync jobs: `queues sync` gets, lists, creates and updates queues; nothing else needs that.
grant_project "$SYNC_SA" roles/cloudtasks.queueAdmin
# Sync jobs: `schedules sync` gets, lists, creates, updates and deletes Cloud Scheduler jobs.
# Only this account has it, so the running service cannot repoint or add schedules.
grant_project "$SYNC_SA" roles/cloudscheduler.admin
# The invoker gets no project role at all: its only grant is run.invoker on the service below.

section "actAs on the invoker, and only on it"
# Putting an account in a task's or a job's oidcToken needs iam.serviceAccounts.actAs on that
# account. Granted on the invoker account itself (not the project), so neither caller can act as
# any other account.
for member in "$RUNTIME_SA" "$SYNC_SA"; do
  run_binding gcloud iam service-accounts add-iam-policy-binding "$INVOKER_SA" \
    --member="serviceAccount:$member" --role=roles/iam.serviceAccountUser "${P[@]}" --condition=None --quiet
done

section "Cloud SQL (PostgreSQL)"
exists gcloud sql instances describe "$SQL_INSTANCE" "${P[@]}" ||
  run gcloud sql instances create "$SQL_INSTANCE" --database-version=POSTGRES_17 --edition=enterprise \
    --tier="$SQL_TIER" --region="$REGION" --availability-type=zonal --storage-auto-increase \
    --backup-start-time=03:00 --enable-point-in-time-recovery --deletion-protection "${P[@]}"
exists gcloud sql databases describe "$DB_NAME" --instance="$SQL_INSTANCE" "${P[@]}" ||
  run gcloud sql databases create "$DB_NAME" --instance="$SQL_INSTANCE" "${P[@]}"

section "Secrets (Secret Manager; values go through stdin and are never printed)"
MOUNTED=() # ENV=secret pairs for the tasks service (and the single service)
WEBHOOK_MOUNTS=() # the webhooks' secrets: on the public service only
# put_secret NAME VALUE: creates the secret, or adds VALUE as a new version when it differs.
put_secret() {
  local name="$1" value="$2"
  if exists gcloud secrets describe "$name" "${P[@]}"; then
    if [[ "$(gcloud secrets versions access latest --secret="$name" "${P[@]}" 2>/dev/null || true)" == "$value" ]]; then
      say "# $name: unchanged"
    else
      run_stdin "$value" gcloud secrets versions add "$name" --data-file=- "${P[@]}"
    fi
  else
    run_stdin "$value" gcloud secrets create "$name" --replication-policy=automatic --data-file=- "${P[@]}"
  fi
}
# keep_or_generate NAME: a random value the first time; kept afterwards (a new session secret
# logs every operator out, and the verify token must keep matching Meta's dashboard).
keep_or_generate() {
  exists gcloud secrets describe "$1" "${P[@]}" ||
    run_stdin "$(random_hex)" gcloud secrets create "$1" --replication-policy=automatic --data-file=- "${P[@]}"
}

DB_SECRET="$(secret_name database-url)"
if exists gcloud secrets describe "$DB_SECRET" "${P[@]}"; then
  say "# $DB_SECRET exists: the database user and password are kept"
else
  if ((DRY_RUN)); then password="GENERATED"; else password="$(random_hex)"; fi
  if exists gcloud sql users describe "$DB_USER" --instance="$SQL_INSTANCE" "${P[@]}"; then
    run gcloud sql users set-password "$DB_USER" --instance="$SQL_INSTANCE" --password="$password" "${P[@]}"
  else
    run gcloud sql users create "$DB_USER" --instance="$SQL_INSTANCE" --password="$password" "${P[@]}"
  fi
  run_stdin "postgres://$DB_USER:$password@/$DB_NAME?host=/cloudsql/$SQL_CONNECTION" \
    gcloud secrets create "$DB_SECRET" --replication-policy=automatic --data-file=- "${P[@]}"
fi
MOUNTED+=("DATABASE_URL=$DB_SECRET")

keep_or_generate "$(secret_name session-secret)"
MOUNTED+=("SESSION_SECRET=$(secret_name session-secret)")
VERIFY_SECRET="$(secret_name whatsapp-verify-token)"
keep_or_generate "$VERIFY_SECRET"
WEBHOOK_MOUNTS+=("WHATSAPP_VERIFY_TOKEN=$VERIFY_SECRET")

# Third parties' secrets, from the deployer's environment when set; on a later run without the
# variable, a secret stored earlier is still mounted.
optional_secret() {
  local env_name="$1" suffix="$2" list="$3" name
  name="$(secret_name "$suffix")"
  if [[ -n "${!env_name:-}" ]]; then
    put_secret "$name" "${!env_name}"
  elif ((DRY_RUN)) || ! gcloud secrets describe "$name" "${P[@]}" >/dev/null 2>&1; then
    say "# $env_name not set and no secret $name: not configured"
    return 0
  fi
  if [[ "$list" == webhooks ]]; then WEBHOOK_MOUNTS+=("$env_name=$name"); else MOUNTED+=("$env_name=$name"); fi
}
optional_secret WHATSAPP_APP_SECRET whatsapp-app-secret webhooks
optional_secret STRIPE_WEBHOOK_SECRET stripe-webhook-secret webhooks
optional_secret STRIPE_SECRET_KEY stripe-secret-key webhooks
optional_secret WHATSAPP_ACCESS_TOKEN whatsapp-access-token tasks
optional_secret LLM_API_KEY llm-api-key tasks
optional_secret OAUTH_CLIENT_SECRET oauth-client-secret tasks

section "Secret access: the runtime account, on each secret it mounts (no project-wide grant)"
for pair in "${MOUNTED[@]}" "${WEBHOOK_MOUNTS[@]}"; do
  run_binding gcloud secrets add-iam-policy-binding "${pair#*=}" --member="serviceAccount:$RUNTIME_SA" \
    --role=roles/secretmanager.secretAccessor "${P[@]}" --condition=None --quiet
done

if ((BUILD)); then
  section "Image (Cloud Build)"
  exists gcloud artifacts repositories describe "$SERVICE" --location="$REGION" "${P[@]}" ||
    run gcloud artifacts repositories create "$SERVICE" --repository-format=docker --location="$REGION" "${P[@]}"
  run gcloud builds submit "$ROOT" --tag="$IMAGE" "${P[@]}"
fi

# ---- Configuration shared by the service(s) and the jobs

join() {
  local IFS="$1"
  shift
  printf '%s' "$*"
}
# gcloud splits --set-env-vars on commas; a value with a comma (ADMIN_EMAILS) needs another
# delimiter, given as ^DELIM^ in front (`gcloud topic escaping`).
env_flag() {
  local pairs=("$@")
  if [[ "$*" == *,* ]]; then printf -- '--set-env-vars=^|^%s' "$(join '|' "${pairs[@]}")"; else printf -- '--set-env-vars=%s' "$(join , "${pairs[@]}")"; fi
}
secrets_flag() {
  local out=() pair
  for pair in "$@"; do out+=("$pair:latest"); done
  printf -- '--set-secrets=%s' "$(join , "${out[@]}")"
}

BASE_ENV=(TASKS_BACKEND=cloud "GCP_PROJECT_ID=$PROJECT" "GCP_LOCATION=$REGION" "PUBLIC_BASE_URL=$PUBLIC_URL"
  "TASKS_INVOKER_SERVICE_ACCOUNT=$INVOKER_SA" LOG_FORMAT=json)
# Tasks are pushed to the service that runs them: the private one in the split topology (the
# public URL stays the base of links in replies), the run.app URL behind a custom domain.
if [[ "$TASKS_URL" != "$PUBLIC_URL" ]]; then BASE_ENV+=("TASKS_PUSH_BASE_URL=$TASKS_URL"); fi
for name in WHATSAPP_PHONE_NUMBER_ID STRIPE_PAYMENT_LINK_URL LLM_BASE_URL LLM_MODEL OAUTH_CLIENT_ID ADMIN_EMAILS; do
  if [[ -n "${!name:-}" ]]; then BASE_ENV+=("$name=${!name}"); fi
done

# deploy_service NAME AUTH PUBLIC ENV_EXTRA... : one Cloud Run service running `backend serve`.
deploy_service() {
  local name="$1" auth="$2" public="$3"
  shift 3
  local access=--allow-unauthenticated
  if ((public == 0)); then access=--no-allow-unauthenticated; fi
  local mounts=("${MOUNTED[@]}")
  if ((public)); then mounts+=("${WEBHOOK_MOUNTS[@]}"); fi
  # --timeout: see longest_deadline. --concurrency: a push holds one of the pool's 10 database
  # connections while its run is claimed and completed (a transactional task for its whole
  # handler); more requests than that wait for a connection, not for an instance.
  # --max-instances: instances x 10 connections stays under the Cloud SQL tier's max_connections
  # (100 on db-custom-1-3840), with room for the jobs. --min-instances 1: webhooks are answered
  # without a cold start, and the outbox sweeper always has an instance.
  # --no-cpu-throttling: the outbox relay sends tasks right after the webhook's 200, and the
  # sweeper runs on a timer; with CPU only during requests both could stall until the next request.
  run gcloud run deploy "$name" --image="$IMAGE" --region="$REGION" "${P[@]}" \
    --service-account="$RUNTIME_SA" "$access" --ingress=all \
    --timeout="$TIMEOUT" --concurrency="$CONCURRENCY" --min-instances="$MIN_INSTANCES" \
    --max-instances="$MAX_INSTANCES" --cpu=1 --memory=512Mi --no-cpu-throttling --cpu-boost \
    --set-cloudsql-instances="$SQL_CONNECTION" \
    "$(env_flag "${BASE_ENV[@]}" "TASKS_AUTH=$auth" "$@")" "$(secrets_flag "${mounts[@]}")"
  # The invoker's one role: calling this service. Cloud Run's IAM check needs it when the
  # service is private; on a public service it changes nothing, and keeps the switch to private
  # a one-flag change.
  run_binding gcloud run services add-iam-policy-binding "$name" --region="$REGION" "${P[@]}" \
    --member="serviceAccount:$INVOKER_SA" --role=roles/run.invoker --condition=None --quiet
}

# deploy_job NAME ACCOUNT TIMEOUT ARGS [--db]: a Cloud Run job running `backend ARGS`, executed now.
deploy_job() {
  local name="$1" account="$2" timeout="$3" args="$4" with_db="${5:-}"
  local flags=(--image="$IMAGE" --region="$REGION" "${P[@]}" --service-account="$account"
    --command=node --args="bin/backend.js,$args" --tasks=1 --max-retries=1 --task-timeout="${timeout}s")
  if [[ "$with_db" == --db ]]; then
    # The migrate job: the service's own configuration, account and secrets.
    flags+=(--set-cloudsql-instances="$SQL_CONNECTION" "$(env_flag "${BASE_ENV[@]}" TASKS_AUTH=oidc)"
      "$(secrets_flag "${MOUNTED[@]}")")
  else
    # The sync jobs need no database and read no secret. The configuration insists on a
    # SESSION_SECRET in cloud mode; these jobs serve no HTTP and sign nothing, so they get a
    # throwaway value rather than access to the real one.
    local throwaway="GENERATED"
    if ((DRY_RUN == 0)); then throwaway="$(random_hex)"; fi
    flags+=("$(env_flag "${BASE_ENV[@]}" TASKS_AUTH=oidc "SESSION_SECRET=$throwaway")")
  fi
  run gcloud run jobs deploy "$name" "${flags[@]}"
  run gcloud run jobs execute "$name" --region="$REGION" "${P[@]}" --wait
}

section "Database migrations (before any new revision serves)"
deploy_job "$SERVICE-migrate" "$RUNTIME_SA" 600 migrate --db

section "Queues (before the service can enqueue)"
deploy_job "$SERVICE-queues-sync" "$SYNC_SA" 300 queues,sync

section "Cloud Run service"
if [[ "$TOPOLOGY" == split ]]; then
  # Tasks on a private service: Cloud Run's IAM lets only the invoker's tokens through, and the
  # service reads the claims of tokens whose signature Cloud Run verified and removed. No
  # webhook secret here (the configuration refuses cloud-run-iam beside public webhooks).
  deploy_service "$SERVICE" cloud-run-iam 0
  # Webhooks, posts and the dashboard on a public service, which verifies any push token itself.
  deploy_service "$WEBHOOKS_SERVICE" oidc 1
else
  # One public service (the webhooks must be reachable by Meta and Stripe), which verifies every
  # push token itself: Google's signature, issuer, exact audience and the invoker's e-mail.
  deploy_service "$SERVICE" oidc 1
fi

section "Schedules (Cloud Scheduler jobs pushing to the service)"
deploy_job "$SERVICE-schedules-sync" "$SYNC_SA" 300 schedules,sync

section "Paste into the dashboards"
if ((DRY_RUN)) || [[ ! -t 1 ]]; then
  VERIFY_SHOWN="\$(gcloud secrets versions access latest --secret=$VERIFY_SECRET --project $PROJECT)"
else
  VERIFY_SHOWN="$(gcloud secrets versions access latest --secret="$VERIFY_SECRET" "${P[@]}")"
fi
cat <<EOF
Meta (developers.facebook.com > your app > WhatsApp > Configuration > Webhook):
  Callback URL:  $PUBLIC_URL/webhooks/whatsapp
  Verify token:  $VERIFY_SHOWN
  Webhook fields: subscribe to "messages"
  Then run this script again with WHATSAPP_APP_SECRET (App settings > Basic), and for replies
  WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID, in the environment.

Stripe (Dashboard > Developers > Webhooks > Add endpoint):
  Endpoint URL:  $PUBLIC_URL/webhooks/stripe
  Events:        checkout.session.completed, checkout.session.async_payment_succeeded,
                 payment_intent.succeeded
  Then run this script again with STRIPE_WEBHOOK_SECRET=whsec_... (the endpoint's signing secret)
  and STRIPE_PAYMENT_LINK_URL in the environment.

Check: curl $PUBLIC_URL/readyz
EOF
