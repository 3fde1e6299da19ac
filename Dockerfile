# Tether for production: `tether start` on PostgreSQL. docker-compose.yml runs it; the README's "Run it
# in a container" makes deploy/ (the configuration and the certificates mounted at /etc/tether).
# test/deploy/dockerfile_replay.test.ts replays these instructions without Docker and knows only
# FROM, WORKDIR, COPY (--from), RUN, ENV, USER, EXPOSE, HEALTHCHECK CMD, ENTRYPOINT and CMD.

# Build: every locked dependency (the compiler is a development one), the verifier package
# (packages/resource-server, a workspace the server depends on) and the server compiled to dist/.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/resource-server/package.json ./packages/resource-server/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY packages/resource-server/tsconfig.build.json ./packages/resource-server/
COPY packages/resource-server/src ./packages/resource-server/src
COPY src ./src
RUN npm run build

# Production dependencies only, exactly as locked. npm links a workspace package
# (node_modules/tether-oauth-resource-server -> ../packages/resource-server); the image holds it as an
# installed package instead, its manifest and compiled dist/, as a registry install would.
FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
RUN rm node_modules/tether-oauth-resource-server
COPY --from=build /app/packages/resource-server/package.json ./node_modules/tether-oauth-resource-server/
COPY --from=build /app/packages/resource-server/dist ./node_modules/tether-oauth-resource-server/dist

# Runtime: production dependencies, the compiled CLI and the migrations; no sources, no compilers.
# Everything is owned by root: the node user (uid 1000) that runs it can read it, not change it.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=dependencies /app/package.json ./
COPY --from=dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY bin/tether.js ./bin/
USER node
EXPOSE 8443
# Asks /readyz on every listener the mounted configuration names (HTTPS included).
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=3 CMD ["node", "bin/tether.js", "health", "--config", "/etc/tether/tether.config.yaml"]
ENTRYPOINT ["node", "bin/tether.js"]
CMD ["start", "--config", "/etc/tether/tether.config.yaml"]
