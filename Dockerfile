# The sts-sidecar image: the binary alone on distroless (glibc, CA certificates, no shell, no
# package manager), running as the non-root user 65532. Its probes need no shell either:
# `sts-sidecar check --wait 1` asks /ready on the loopback admin port.
#
#   docker build -t sts-sidecar .                               the product (the last stage)
#   docker build --target dev-upstreams -t sts-sidecar-dev .    the dev token service and PKI,
#                                                               for docker-compose.yml only
#
# /run/sts-sidecar is where the Kubernetes example mounts the volume that holds the
# authorization token file; it exists (owned by 65532) so that the image also works without one.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sts-sidecar \
 && mkdir -p /rootfs/run/sts-sidecar /rootfs-dev/pki

FROM build AS build-dev
RUN cargo build --release --locked --features test-util --example dev_upstreams

FROM gcr.io/distroless/cc-debian12:nonroot AS dev-upstreams
COPY --from=build-dev --chown=65532:65532 /rootfs-dev/ /
COPY --from=build-dev /src/target/release/examples/dev_upstreams /usr/local/bin/dev-token-service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dev-token-service"]

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build --chown=65532:65532 /rootfs/ /
COPY --from=build /src/target/release/sts-sidecar /usr/local/bin/sts-sidecar
USER 65532:65532
EXPOSE 61679 61680
ENTRYPOINT ["/usr/local/bin/sts-sidecar"]
CMD ["serve", "--help"]
