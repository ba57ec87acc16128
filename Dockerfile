# Builds the switch and runs it on its built-in defaults (all listeners on).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY config.toml /etc/switchboard/config.toml
WORKDIR /var/lib/switchboard
EXPOSE 8080 50051
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/config.toml"]
