//go:build tools

// Package tools pins the Alertmanager the alert e2e tests route alerts through.
package tools

import _ "github.com/prometheus/alertmanager/cmd/alertmanager"
