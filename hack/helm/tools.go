//go:build tools

// Package tools records the binary this module builds, so `go mod tidy` keeps it pinned.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
