# sluice's container image: docker build -t sluice .
#
# The config is read from /etc/sluice/sluice.yaml: mount a directory there
# (a Kubernetes ConfigMap, or docker run -v "$PWD/conf:/etc/sluice:ro");
# sluice watches that directory and reloads on change. Proxy on 8080 and
# admin (health, metrics, API, dashboard) on 9901 when the config listens
# there; admin.listen defaults to 127.0.0.1:9901, which nothing outside
# the container reaches, so set it to ":9901" (deploy/configmap.yaml does).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo, so no libc to ship), without local paths or symbols.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/sluice", "run", "-config", "/etc/sluice/sluice.yaml"]
