# syntax=docker/dockerfile:1
# The one image CoreDog runs in the cluster: `coredog webhook` and `coredog watcher`.
# The manifests choose the user: the webhook runs as 65532, the watcher as root (it reads and
# removes cores written by any user), both with a read-only root filesystem.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p coredog \
    && install -D -m 0755 target/release/coredog /out/coredog

FROM gcr.io/distroless/cc-debian12
LABEL org.opencontainers.image.title="coredog" \
      org.opencontainers.image.description="Collects core dumps from Kubernetes pods" \
      org.opencontainers.image.source="https://github.com/coredog-io/coredog" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/coredog /usr/local/bin/coredog
ENTRYPOINT ["/usr/local/bin/coredog"]
