# gatehouse container image.
#
#   docker build -t gatehouse .
#   docker run -d --name gatehouse -p 443:8443 -p 80:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/deploy/config.example.toml:/etc/gatehouse/config.toml:ro" \
#     -v "$PWD/my-certs:/etc/gatehouse/certs:ro" \
#     -v gatehouse-data:/var/lib/gatehouse gatehouse
#
# See README.md, "Running in a container", and deploy/config.example.toml.

# ---- build ------------------------------------------------------------------------------
# Pinned to the toolchain the project is tested with. The crate needs Rust 2024 edition
# (>= 1.85) and its dependencies need >= 1.89. The slim image already has gcc and libc6-dev,
# which are all that the bundled SQLite (rusqlite "bundled") and ring need: both build C
# (and ring's pregenerated assembly) through the `cc` crate.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, against a stub crate, so that editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# The real sources. COPY keeps the files' own modification times, which may be older than
# the stub's build, so touch them: otherwise cargo could keep the stub binary.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/gatehouse /usr/local/bin/gatehouse

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the system trust store, for any TLS the process makes to the outside
# (none today: backends are plain http://; kept so that a later build's outbound HTTPS works).
# Versions are not pinned (DL3008): bookworm's security updates replace a pinned version and
# the build would then fail; the base image tag is what pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 gatehouse \
 && useradd --no-create-home --uid 10001 --gid 10001 --home-dir /var/lib/gatehouse \
      --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /etc/gatehouse /var/lib/gatehouse \
 && chown gatehouse:gatehouse /var/lib/gatehouse

COPY --from=build /usr/local/bin/gatehouse /usr/local/bin/gatehouse

# The SQLite store (and its WAL files) live here: mount a named volume on it.
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]

# The config (and the certificates it names) are mounted read-only under /etc/gatehouse.
# Paths inside the config resolve against the config file's folder: use absolute ones
# (see deploy/config.example.toml).
# NO_COLOR: plain log lines (no ANSI colour codes) for `docker logs` and log collectors.
ENV GATEHOUSE_CONFIG=/etc/gatehouse/config.toml \
    NO_COLOR=1

# 8443: HTTPS for every site and the portal; 8080: plain HTTP redirecting to HTTPS;
# 9090: admin (/healthz, /readyz, /metrics) - publish it on a private address only.
EXPOSE 8443 8080 9090

# Numeric, so that the runtime (and Kubernetes' runAsNonRoot) can tell it is not root
# without reading /etc/passwd (hadolint DL3066). 10001 is the gatehouse user and group above.
USER 10001:10001

# Asks http://<server.admin>/healthz; needs server.admin in the config.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["gatehouse", "healthcheck"]

ENTRYPOINT ["gatehouse"]
CMD ["run"]
