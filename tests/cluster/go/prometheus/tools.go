//go:build tools

// Package tools pins the Prometheus server the egress e2e tests query through.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
