# sts-sidecar and the dev token service, built from source.
#   docker build -t sts-sidecar .
# The runtime image holds two binaries: sts-sidecar (the entrypoint) and dev-token-service
# (examples/dev_upstreams.rs, for the docker-compose demo only).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sts-sidecar \
 && cargo build --release --locked --features test-util --example dev_upstreams

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /pki /shared \
 && chown 65532:65532 /pki /shared
COPY --from=build /src/target/release/sts-sidecar /usr/local/bin/sts-sidecar
COPY --from=build /src/target/release/examples/dev_upstreams /usr/local/bin/dev-token-service
USER 65532:65532
EXPOSE 61679 61680
ENTRYPOINT ["sts-sidecar"]
CMD ["serve", "--help"]
