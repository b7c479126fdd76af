# The sts-sidecar image: the binary alone on distroless (glibc, CA certificates, no shell, no
# package manager), running as the non-root user 65532. Its probes need no shell either:
# `sts-sidecar check --wait 1` asks /ready on the loopback admin port.
#
#   docker build -t sts-sidecar .                               the product (the last stage),
#                                                               built from source
#   docker build --target dev-upstreams -t sts-sidecar-dev .    the dev token service and PKI,
#                                                               for docker-compose.yml only
#
# The release workflow builds the same last stage for linux/amd64 and linux/arm64 from the
# release binaries instead of compiling again under emulation:
#
#   scripts/image-context.sh target/dist/sts-sidecar-VERSION target/image
#   docker buildx build --build-arg BINARY_FROM=release --platform linux/amd64,linux/arm64 \
#     -f Dockerfile target/image
#
# /run/sts-sidecar is where the Kubernetes manifests mount the volume that holds the
# authorization token file; it exists (owned by 65532) so that the image also works without one.

# Where the binary comes from: `source` (compiled in the build stage) or `release` (the build
# context holds rootfs-amd64/ and rootfs-arm64/, laid out by scripts/image-context.sh).
ARG BINARY_FROM=source

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sts-sidecar \
 && mkdir -p /rootfs/run/sts-sidecar /rootfs/usr/local/bin /rootfs-dev/pki \
 && cp target/release/sts-sidecar /rootfs/usr/local/bin/sts-sidecar

FROM scratch AS binary-source
COPY --from=build /rootfs/ /

FROM scratch AS binary-release
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /

# A stage of this file, chosen by BINARY_FROM, not an image to tag.
# hadolint ignore=DL3006
FROM binary-${BINARY_FROM} AS binary

FROM build AS build-dev
RUN cargo build --release --locked --features test-util --example dev_upstreams

FROM gcr.io/distroless/cc-debian12:nonroot AS dev-upstreams
COPY --from=build-dev --chown=65532:65532 /rootfs-dev/ /
COPY --from=build-dev /src/target/release/examples/dev_upstreams /usr/local/bin/dev-token-service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dev-token-service"]

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=binary --chown=65532:65532 /run/ /run/
COPY --from=binary /usr/local/bin/sts-sidecar /usr/local/bin/sts-sidecar
USER 65532:65532
EXPOSE 61679 61680
ENTRYPOINT ["/usr/local/bin/sts-sidecar"]
CMD ["serve", "--help"]
