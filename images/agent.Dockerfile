# ocelot-agent + ocelot-cni (static, musl), with BIRD 2 and nft from Debian and boringtun-cli for hosts
# without the WireGuard kernel module.
#   docker build -f images/agent.Dockerfile -t ghcr.io/ocelot-net/ocelot-agent:0.1.0 .
FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p ocelot-agent
RUN cargo install --locked --root /out --target x86_64-unknown-linux-musl boringtun-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends bird2 nftables \
    && rm -rf /var/lib/apt/lists/* /etc/bird/* && mkdir -p /var/run/bird
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/ocelot-agent /usr/local/bin/ocelot-agent
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/ocelot-cni /usr/local/bin/ocelot-cni
COPY --from=build /out/bin/boringtun-cli /usr/local/bin/boringtun-cli
ENTRYPOINT ["/usr/local/bin/ocelot-agent"]
