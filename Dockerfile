# syntax=docker/dockerfile:1
# The websocket-server image for ECS on Graviton:
#   docker buildx build --platform linux/arm64 -t websocket-server .
# (`make image` does this, tagged by scripts/image-tag.sh, and pushes to ECR.)
#
# The build stage runs on the build host's own CPU ($BUILDPLATFORM) and cross-compiles for arm64,
# so an x86 host builds in minutes instead of emulating arm64 under QEMU, and needs no QEMU; an
# arm64 host builds natively. Only the runtime stage is arm64, and it runs nothing at build time.
#
# The build context is the allowlist in .dockerignore (the Cargo workspace's manifests and
# sources), and image-tag.sh hashes that context with this file: whatever `COPY . .` copies is in
# the tag.

ARG RUST_VERSION=1.95
# Builder and runtime share the Debian release: the cross toolchain's arm64 glibc is the runtime's,
# so the binary never needs a newer glibc than the image has.
ARG DEBIAN_RELEASE=trixie

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG BUILDARCH
ARG TARGETARCH
# ring (rustls' crypto, for rediss://) and mimalloc compile C and assembly through the cc crate, so
# the target needs a C compiler and archiver as well as a linker. On an arm64 host these names are
# the native gcc and binutils; elsewhere, Debian's cross toolchain installed below.
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# Debian's packages are not pinned: the release is, and a pinned version disappears from the
# mirror at the next point release, failing the build for no gain.
# hadolint ignore=DL3008
RUN if [ "$TARGETARCH" != arm64 ]; then \
      echo "This image is for linux/arm64 (ECS on Graviton), not linux/$TARGETARCH: build with --platform linux/arm64." >&2; \
      exit 1; \
    fi \
    && rustup target add aarch64-unknown-linux-gnu \
    && if [ "$BUILDARCH" != arm64 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --target aarch64-unknown-linux-gnu -p server --bin websocket-server \
    && cp target/aarch64-unknown-linux-gnu/release/websocket-server /usr/local/bin/websocket-server

# Slim rather than distroless: ECS Exec needs a shell in the container to be of any use.
FROM debian:${DEBIAN_RELEASE}-slim
# rediss:// (the Redis backplane over TLS) trusts the system CA store; the bundle is the same file
# whatever the CPU, so the build stage's serves.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/websocket-server /usr/local/bin/websocket-server
# Numeric, so ECS (user "10001:10001" in the task definition) and Kubernetes can verify non-root.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/websocket-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/websocket-server"]
