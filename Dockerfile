# callhook container image: the release binary on debian:bookworm-slim, run as a non-root user.
# Builds with the classic builder (no BuildKit-only syntax). Dependencies are compiled in their own
# layer (cargo-chef), so a source change rebuilds only the crate itself.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78 \
    && rm -rf "$CARGO_HOME/registry" "$CARGO_HOME/git"
WORKDIR /app

# The recipe lists the dependency graph only; it changes when Cargo.toml/Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
# The whole context (see .dockerignore), so build scripts and manifest targets are all present;
# migrations/ among it is embedded at compile time by sqlx::migrate!.
COPY . .
RUN cargo build --release --locked --bin callhook \
    && cp target/release/callhook /usr/local/bin/callhook

FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 callhook \
    && useradd --system --uid 10001 --gid callhook --home-dir /data --shell /usr/sbin/nologin callhook \
    && mkdir -p /data \
    && chown callhook:callhook /data
# The CA bundle of the builder (the ca-certificates package, without pulling openssl into the
# image): TLS to AI Studio and to a Postgres that requires it.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /usr/local/bin/callhook /usr/local/bin/callhook

# The default DATABASE_URL (sqlite://callhook.db) resolves inside /data; set
# DATABASE_URL=postgres://... for production.
WORKDIR /data
VOLUME ["/data"]
ENV CALLHOOK_BIND=0.0.0.0:8080 \
    CALLHOOK_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["callhook", "healthcheck"]
ENTRYPOINT ["callhook"]
CMD ["serve"]
