# Builds the switch and runs it listening on every interface of the container.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
# The built-in defaults listen on loopback only, which a container cannot be reached on: this
# image's config is the same file with both listeners on 0.0.0.0. Beyond loopback the switch
# refuses to start until every ingress has an access rule ([grpc] tokens or allow_from,
# [auth] live_call_tokens, [auth] api_keys, [ringover] tokens, ... or the ingress's
# allow_unauthenticated = true), and its message names each setting. Mount a config with them
# over /etc/switchboard/config.toml.
COPY config.toml /etc/switchboard/config.toml
RUN sed -i -E 's/^listen = "127\.0\.0\.1:/listen = "0.0.0.0:/' /etc/switchboard/config.toml \
 && test "$(grep -c '^listen = "0\.0\.0\.0:' /etc/switchboard/config.toml)" = 2
WORKDIR /var/lib/switchboard
EXPOSE 8080 50051
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/config.toml"]
