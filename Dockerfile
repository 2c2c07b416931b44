# syntax=docker/dockerfile:1.7
#
# One image per kubecrew binary, chosen by build argument:
#
#   docker build --build-arg BINARY=kafkanotify -t ghcr.io/kubecrew/kafkanotify:dev .
#
# `cargo xtask images` builds all of them (docker or podman). The runtime image is distroless
# (glibc, CA certificates, no shell) and runs as an unprivileged user; every binary uses rustls,
# so no OpenSSL is needed.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG BINARY
RUN test -n "${BINARY}" || { echo "set --build-arg BINARY=<binary name>, e.g. kafkanotify" >&2; exit 1; }
WORKDIR /src
COPY . .
# The caches keep the registry and the target dir between builds of the different binaries,
# so the second image reuses every dependency the first one compiled.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin "${BINARY}" \
 && install -D -m 0755 "target/release/${BINARY}" /out/app

FROM ${RUNTIME_IMAGE}
ARG BINARY
LABEL org.opencontainers.image.source="https://github.com/kubecrew/kubecrew" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="${BINARY}"
COPY --from=build /out/app /usr/local/bin/app
# 65532 is distroless's "nonroot"; the Deployments also set runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/app"]
