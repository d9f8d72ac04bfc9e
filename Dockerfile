# The orders service example, built from this repository on Debian bookworm.
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake ninja-build pkg-config \
      ca-certificates libnats-dev nlohmann-json3-dev libfmt-dev zlib1g-dev libssl-dev && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNATBUS_BUILD_TESTS=OFF \
      -DNATBUS_BUILD_BENCH=OFF -DNATBUS_BUILD_EXAMPLES=ON && cmake --build /build --target orders_service

FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libnats3.4 libfmt9 zlib1g ca-certificates \
      && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/examples/orders_service /usr/local/bin/orders_service
CMD ["/usr/local/bin/orders_service"]
