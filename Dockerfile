# The service as Cloud Run runs it. The base is pinned to the Node version of package.json's `node`
# devDependency (test/unit/dockerfile.test.ts keeps them equal); CI makes this base locally and
# builds and runs the image (scripts/container/, docs/deploy.md "The container image").
FROM node:24.21.0-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The workspace's manifest (the emulator package, packages/cloud-tasks-emulator): npm ci installs
# its dependencies and links it into node_modules; its code comes in the last stage.
COPY packages/cloud-tasks-emulator/package.json ./packages/cloud-tasks-emulator/
# Production dependencies only, exactly as locked; none needs an install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24.21.0-bookworm-slim
# `backend <command>` on PATH for the one-off jobs (migrate, queues sync, schedules sync).
RUN ln -s /app/bin/backend.js /usr/local/bin/backend
WORKDIR /app
# NODE_COMPILE_CACHE: V8's compiled code, made at build time (below). Cloud Run starts each instance
# with an empty file system, so without it every cold start compiles every module again.
ENV NODE_ENV=production PORT=8080 TASKS_BACKEND=cloud LOG_FORMAT=json NODE_COMPILE_CACHE=/app/.compile-cache
EXPOSE 8080
# Exec form: node is PID 1 and receives Cloud Run's SIGTERM itself; the service drains and exits 0
# (closeOnSignals in src/main.ts). A job overrides the arguments: `migrate`, `queues sync`, ...
ENTRYPOINT ["node", "bin/backend.js"]
CMD ["serve"]
# Root owns the code and the compile cache; the service runs as `node` and can change neither (it
# only reads the cache). The code comes last, so a change to it rebuilds the last three layers.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json schema.sql ./
COPY bin ./bin
COPY migrations ./migrations
COPY packages ./packages
COPY src ./src
# Loads what `serve` loads in cloud mode (no database is opened), so its compiled code is cached.
RUN node --input-type=module -e "for (const m of ['cli/main', 'main', 'db/postgres', 'cli/control-channel']) await import('/app/src/' + m + '.ts')"
USER node
