# For those who build images with Docker; `make image` builds the same image without it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /drplan-controller ./cmd/drplan-controller

FROM gcr.io/distroless/static:nonroot
COPY --from=build /drplan-controller /drplan-controller
USER 65532:65532
ENTRYPOINT ["/drplan-controller"]
