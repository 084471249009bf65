# vfleet CLI and daemons (worker, controller) in one image.
#
#   docker build -t vfleet .
#   docker run --rm --init -v "$PWD:/work" vfleet validate -f fleet.yaml
#
# Without REDIS_URL, vfleet starts a private redis-server in /work/.vfleet/, so the image carries
# one; pass -e REDIS_URL=redis://... to use a shared server instead. --init gives the container an
# init that reaps that redis-server and forwards signals, which node as PID 1 does not do.

# --- build: compile TypeScript, then keep only the production dependencies -------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app

# Dependencies first, so this layer is rebuilt only when the lockfile changes. --ignore-scripts
# skips our own prepare (tsc: the sources are not here yet) and the optional native builds of
# ssh2 and cpu-features, which need a compiler this image lacks; both have pure-JS fallbacks.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# Only what the image ships is compiled: src/ (and the schema it imports), then bundled into
# dist/cli/ (scripts/bundle-cli.ts). Tests, benchmarks and
# examples are type-checked by CI, not here.
COPY tsconfig.json ./
COPY schemas ./schemas
COPY src ./src
COPY scripts/bundle-cli.ts ./scripts/
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime ----------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime

LABEL org.opencontainers.image.title="vfleet" \
      org.opencontainers.image.description="Infrastructure as code for fleets of virtual machines and sandboxes" \
      org.opencontainers.image.licenses="Apache-2.0"

# redis-server: the private queue and state store when REDIS_URL is unset.
# openssh-client: ssh-keygen/ssh for operators working with ssh hosts from this container.
# qemu-utils: qemu-img, for qcow2 disks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server openssh-client qemu-utils \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 vfleet \
 && useradd --uid 10001 --gid vfleet --create-home --home-dir /home/vfleet --shell /usr/sbin/nologin vfleet \
 && mkdir /work \
 && chown vfleet:vfleet /work

# The CLI reads /app/package.json (its version) and dist/schemas/fleet.schema.json (the schema it
# validates against); the files stay owned by root so the vfleet user cannot change them.
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/cli ./dist/cli
COPY --from=build /app/dist/schemas ./dist/schemas
COPY bin ./bin
COPY schemas ./schemas
# bin/vfleet.js finds dist/ through its real path, so a symlink on PATH works.
RUN ln -s /app/bin/vfleet.js /usr/local/bin/vfleet

ENV NODE_ENV=production
USER vfleet
WORKDIR /work
ENTRYPOINT ["vfleet"]
CMD ["--help"]
