# pgsluice container image: build with cargo, run from a slim Debian as a
# non-root user. Usage (see README, "Docker"):
#   docker build -t pgsluice .
#   docker run -d -p 6432:6432 -p 9127:9127 -v "$PWD/etc/docker:/etc/pgsluice:ro" pgsluice

# ---- build: the profile-guided build benches/compare.sh measures ----
FROM rust:1.95-bookworm AS build
WORKDIR /src
# auth_type = pam links libpam; its bindings, and those of pg_query (read/write
# splitting), are made with bindgen (libclang).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpam0g-dev libclang-dev \
    && rm -rf /var/lib/apt/lists/*
# Manifests first: downloaded dependencies stay cached until Cargo.lock changes.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src
COPY src ./src
COPY scripts ./scripts
COPY benches ./benches
# scripts/build-pgo.sh installs PostgreSQL, pgbench and python3 here (build
# stage only) for its training run. Should it fail, the image still builds,
# with a plain release build: `pgsluice --version` says which one it holds.
RUN if bin="$(scripts/build-pgo.sh)"; then \
        install -m 0755 "$bin" /usr/local/bin/pgsluice; \
    else \
        echo "profile-guided build failed: falling back to a plain release build" >&2; \
        cargo build --release --locked && install -m 0755 target/release/pgsluice /usr/local/bin/pgsluice; \
    fi \
    && /usr/local/bin/pgsluice --version

# ---- run ----
FROM debian:bookworm-slim
# postgresql-client for pg_isready (the HEALTHCHECK); ca-certificates for
# TLS once it lands.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system pgsluice \
    && useradd --system --gid pgsluice --home-dir /nonexistent --shell /usr/sbin/nologin pgsluice \
    && install -d -o root -g pgsluice -m 0750 /etc/pgsluice
COPY --from=build /usr/local/bin/pgsluice /usr/local/bin/pgsluice
# The default config; mount a directory with pgsluice.ini and userlist.txt
# over /etc/pgsluice to use your own.
COPY --chown=root:pgsluice etc/docker/pgsluice.ini etc/docker/userlist.txt /etc/pgsluice/
USER pgsluice:pgsluice
EXPOSE 6432 9127
# pg_isready only checks that the port answers the protocol (no login).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["pg_isready", "--quiet", "--host=127.0.0.1", "--port=6432", "--timeout=2"]
# SIGINT: stop accepting, let running transactions finish (like systemd's unit).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/pgsluice"]
CMD ["/etc/pgsluice/pgsluice.ini"]
