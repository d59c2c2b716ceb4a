# syntax=docker/dockerfile:1
# The websocket-server image for ECS on Graviton:
#   docker buildx build --platform linux/arm64 -t websocket-server .
# (`make image` does this and pushes to ECR.) Both stages run on the target platform: on an x86
# host buildx emulates arm64 with QEMU, slower than a cross toolchain but nothing to configure.

ARG RUST_VERSION=1.95
# Builder and runtime share the Debian release, hence the glibc the binary links against.
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p server --bin websocket-server \
    && cp target/release/websocket-server /usr/local/bin/websocket-server

# Slim rather than distroless: ECS Exec needs a shell in the container to be of any use.
FROM debian:${DEBIAN_RELEASE}-slim
# rediss:// (the Redis backplane over TLS) trusts the system CA store.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/websocket-server /usr/local/bin/websocket-server
# Numeric, so ECS (user "10001:10001" in the task definition) and Kubernetes can verify non-root.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/websocket-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/websocket-server"]
