# The heartwire server as a container image: built in one stage, run in a small one as a
# user without privileges. docs/DEPLOY.md explains how to run it. (The test suite does not
# build this image: its machines have no container engine.)
#
#   docker build -t heartwire .
#   docker run --rm -p 8080:8080 --ulimit nofile=65536:65536 heartwire
#
# The toolchain is the one the repository is tested with; Cargo.lock pins the crates.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p heartwire-cli \
    && install -D -m 0755 target/release/heartwire /out/heartwire

FROM debian:bookworm-slim
# ca-certificates: the platform roots that wss:// backups, rediss:// and the JWKS fetch
# check certificates against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin heartwire
COPY --from=build /out/heartwire /usr/local/bin/heartwire
USER 10001:10001
# Inside a container the server must listen beyond loopback to be reached.
ENV HEARTWIRE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# SIGTERM: every client gets close 1012 with a spread reconnect hint (allow 20 s to stop).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/heartwire"]
CMD ["serve"]
