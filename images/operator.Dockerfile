# ocelot-operator: a static (musl) binary on a distroless base, non-root.
#   docker build -f images/operator.Dockerfile -t ghcr.io/ocelot-net/ocelot-operator:0.1.0 .
FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p ocelot-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/ocelot-operator /usr/local/bin/ocelot-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ocelot-operator"]
