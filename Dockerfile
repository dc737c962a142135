# One image for every connector service (ingress, worker, egress, simulator, topics, replay).
# Build stage: the Swift toolchain with librdkafka-dev and libmimalloc-dev. Runtime: Debian slim
# with librdkafka1 and libmimalloc2.0 (the allocator the connector links ahead of the C library).
FROM swift:6.3.1-bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends librdkafka-dev libmimalloc-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not fetch them again.
COPY Package.swift ./
RUN swift package resolve
COPY . .
RUN swift build -c release --product connector --static-swift-stdlib \
 && install -D .build/release/connector /out/connector

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends librdkafka1 libmimalloc2.0 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/connector /usr/local/bin/connector
COPY connector.yaml /app/connector.yaml
COPY flows /app/flows
WORKDIR /app
USER nobody
EXPOSE 8080 8081 8082 8088
ENTRYPOINT ["connector"]
CMD ["--help"]
