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
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
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

# helm v4 for the collector image, from the module pinned in tools/helm (go.mod and go.sum),
# built as `cargo xtask tools` builds it: static, trimmed, with helm's version stamped.
FROM ${GO_IMAGE} AS helm
WORKDIR /src/tools/helm
COPY tools/helm/ ./
RUN --mount=type=cache,target=/go/pkg/mod \
    version="$(go list -m -f '{{.Version}}' helm.sh/helm/v4)" \
 && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${version}" \
      -o /out/helm helm.sh/helm/v4/cmd/helm

FROM ${RUNTIME_IMAGE} AS runtime
ARG BINARY
LABEL org.opencontainers.image.source="https://github.com/kubecrew/kubecrew" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="${BINARY}"
COPY --from=build /out/app /usr/local/bin/app
# 65532 is distroless's "nonroot"; the Deployments also set runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/app"]

# The collector drives helm as a subprocess (docs/collector.md): its image carries the binary.
# `cargo xtask images` builds this target for the collector, `runtime` for the others.
FROM runtime AS runtime-collector
COPY --from=helm /out/helm /usr/local/bin/helm
