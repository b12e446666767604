# tenantproxy in a container. The SQL guard links PostgreSQL's parser (libpg_query) through cgo,
# so the build stage needs a C compiler and the binary needs glibc at run time.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/tenantproxy ./cmd/tenantproxy

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --no-create-home --shell /usr/sbin/nologin tenantproxy
COPY --from=build /out/tenantproxy /usr/local/bin/tenantproxy
USER tenantproxy
EXPOSE 5432 9187
# Mount the configuration at /etc/tenantproxy/tenantproxy.toml.
ENTRYPOINT ["tenantproxy"]
CMD ["serve", "--config", "/etc/tenantproxy/tenantproxy.toml"]
