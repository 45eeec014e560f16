//go:build tools

// Package tools pins the Jaeger the tracing e2e tests export OTLP spans to and read back.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
