# syntax=docker/dockerfile:1
# The prescale operator image: a release build on Debian 12, copied into distroless's
# cc-debian12 (glibc, libgcc and CA certificates; no shell, no package manager), run as the
# non-root user 65532. The binary is the entrypoint; `run` is the default command.
#   docker build -t prescale .
#   docker run --rm prescale --help

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# a workspace member: cargo loads every member's manifest (only the prescale binary is built)
COPY gateway/Cargo.toml ./gateway/Cargo.toml
COPY gateway/src ./gateway/src
# the bundled trace of `prescale simulate` is compiled in
COPY examples/traces ./examples/traces
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin prescale \
    && install -m 0755 target/release/prescale /prescale

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /prescale /prescale
USER 65532:65532
ENTRYPOINT ["/prescale"]
CMD ["run"]
