// Command kstatus computes the status of Kubernetes objects as kstatus computes it
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute: the library behind Flux's health checks, kpt and
// cli-utils' apply and status commands), so that the project tests what those tools will say of a
// GpuModelDeployment with the library itself, not a reading of its documentation.
//
//	kstatus FILE...
//	    Each FILE holds one object (YAML or JSON, as `kubectl get -o json` writes it). Prints a JSON array
//	    with, for each, kstatus's status (InProgress, Failed, Current, Terminating, NotFound, Unknown) and
//	    message.
//	kstatus version
//	    The cli-utils module version this binary was built from.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func compute(path string) (result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return result{}, err
	}
	// As the apiserver's clients decode it: integers as int64 (kstatus reads generations with NestedInt64).
	data, err = yaml.YAMLToJSON(data)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return result{}, fmt.Errorf("%s: %w", path, err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", path, err)
	}
	return result{Status: res.Status.String(), Message: res.Message}, nil
}

func versions() map[string]string {
	out := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		out["go"] = info.GoVersion
		for _, dep := range info.Deps {
			if dep.Path == "sigs.k8s.io/cli-utils" {
				out[dep.Path] = dep.Version
			}
		}
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: kstatus FILE... | version"))
	}
	var out any
	if os.Args[1] == "version" && len(os.Args) == 2 {
		out = versions()
	} else {
		results := make([]result, 0, len(os.Args)-1)
		for _, path := range os.Args[1:] {
			res, err := compute(path)
			if err != nil {
				fail(err)
			}
			results = append(results, res)
		}
		out = results
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(2)
}
