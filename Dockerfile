# The service for Cloud Run: Node 24 slim, production dependencies only, non-root.
# Not built in CI (no Docker engine there); see docs/deploy.md.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-slim
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
USER node
ENV PORT=8080 TASKS_BACKEND=cloud LOG_FORMAT=json
EXPOSE 8080
# The same binary runs the deploy steps: `node bin/backend.js migrate|queues sync|schedules sync`.
CMD ["node", "bin/backend.js", "serve"]
