// Command argocd-health runs a resource health check through Argo CD's own code, so that the project tests
// its health.lua with the engine Argo CD runs it with (gopher-lua behind util/lua), not a Lua of its own.
//
//	argocd-health test DIR
//	    DIR is laid out as Argo CD's resource_customizations/<group>/<kind>/ (health.lua, health_test.yaml,
//	    testdata/). Every case runs as util/lua's TestLuaHealthScript runs a built-in script: a VM with the
//	    standard libraries open, ExecuteHealthLua, the result compared with healthStatus. Prints one JSON
//	    object per case; exits 1 when any differs.
//	argocd-health cm ARGOCD_CM RESOURCE...
//	    The health the application controller gives each resource under the customizations of an argocd-cm
//	    ConfigMap, computed as `argocd admin settings resource-overrides health` computes it: Argo CD's
//	    settings manager parses the resource.customizations.* keys, gitops-engine's GetResourceHealth runs
//	    the script (standard libraries off unless resource.customizations.useOpenLibs.* says otherwise, and
//	    "Pending deletion" before any script for a resource being deleted). Prints a JSON array.
//	argocd-health actions DIR
//	    DIR as above, with actions/ (discovery.lua, action_test.yaml, <action>/action.lua, testdata/). Every
//	    case of action_test.yaml runs as util/lua's TestLuaResourceActionsScript runs a built-in action:
//	    discovery with the standard libraries open, each action without them (as the API server runs it),
//	    the output compared with the expected object by gitops-engine's diff. Prints one JSON object per case;
//	    exits 1 when any differs.
//	argocd-health cm-actions ARGOCD_CM RESOURCE [ACTION]
//	    What the API server offers and does for a resource under the customizations of an argocd-cm
//	    ConfigMap: the actions its discovery script lists (ListResourceActions), and, with ACTION, the JSON
//	    merge patch RunResourceActionV2 sends to the cluster for it. Prints a JSON object.
//	argocd-health version
//	    The Argo CD and gopher-lua module versions this binary was built from.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"

	"github.com/argoproj/gitops-engine/pkg/health"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
)

// testFile is health_test.yaml, read as util/lua's health_test.go reads it.
type testFile struct {
	Tests []struct {
		InputPath    string              `json:"inputPath"`
		HealthStatus health.HealthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type caseResult struct {
	InputPath string               `json:"inputPath"`
	Want      health.HealthStatus  `json:"want"`
	Got       *health.HealthStatus `json:"got"`
	Error     string               `json:"error,omitempty"`
	Pass      bool                 `json:"pass"`
}

func readObject(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

func runTests(dir string) ([]caseResult, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return nil, err
	}
	var tests testFile
	if err := yaml.Unmarshal(data, &tests); err != nil {
		return nil, fmt.Errorf("health_test.yaml: %w", err)
	}
	if len(tests.Tests) == 0 {
		return nil, errors.New("health_test.yaml has no tests")
	}
	results := make([]caseResult, 0, len(tests.Tests))
	for _, test := range tests.Tests {
		result := caseResult{InputPath: test.InputPath, Want: test.HealthStatus}
		obj, err := readObject(filepath.Join(dir, test.InputPath))
		if err == nil {
			// Built-in scripts run with the standard libraries open (lua.VM.GetHealthScript says so).
			result.Got, err = lua.VM{UseOpenLibs: true}.ExecuteHealthLua(obj, string(script))
		}
		if err != nil {
			result.Error = err.Error()
		}
		result.Pass = err == nil && reflect.DeepEqual(&test.HealthStatus, result.Got)
		results = append(results, result)
	}
	return results, nil
}

// settingsMeta is what `argocd admin settings` sets on a ConfigMap read from a file so that the settings
// manager's informer (namespace, part-of label) finds it.
func settingsMeta(cm *corev1.ConfigMap) {
	cm.SetNamespace("default")
	labels := cm.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels["app.kubernetes.io/part-of"] = "argocd"
	cm.SetLabels(labels)
}

// resourceOverrides is what Argo CD's settings manager makes of an argocd-cm ConfigMap read from a file.
func resourceOverrides(cmPath string) (map[string]v1alpha1.ResourceOverride, error) {
	data, err := os.ReadFile(cmPath)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", cmPath, err)
	}
	if cm.Name != common.ArgoCDConfigMapName {
		return nil, fmt.Errorf("%s: the ConfigMap must be named %s", cmPath, common.ArgoCDConfigMapName)
	}
	settingsMeta(&cm)
	manager := settings.NewSettingsManager(context.Background(), fake.NewClientset(&cm), "default")
	if err := manager.ResyncInformers(); err != nil {
		return nil, err
	}
	return manager.GetResourceOverrides()
}

func controllerHealth(cmPath string, resources []string) ([]*health.HealthStatus, error) {
	overrides, err := resourceOverrides(cmPath)
	if err != nil {
		return nil, err
	}
	results := make([]*health.HealthStatus, 0, len(resources))
	for _, path := range resources {
		obj, err := readObject(path)
		if err != nil {
			return nil, err
		}
		status, err := health.GetResourceHealth(obj, lua.ResourceHealthOverrides(overrides))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, status)
	}
	return results, nil
}

func versions() map[string]string {
	out := map[string]string{}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	out["go"] = info.GoVersion
	for _, dep := range info.Deps {
		switch dep.Path {
		case "github.com/argoproj/argo-cd/v3", "github.com/argoproj/gitops-engine", "github.com/yuin/gopher-lua":
			out[dep.Path] = dep.Version
		}
	}
	return out
}

func main() {
	usage := "usage: argocd-health test DIR | actions DIR | cm ARGOCD_CM RESOURCE... | cm-actions ARGOCD_CM RESOURCE [ACTION] | version"
	if len(os.Args) < 2 {
		fail(errors.New(usage))
	}
	var out any
	var err error
	pass := true
	switch {
	case os.Args[1] == "test" && len(os.Args) == 3:
		var results []caseResult
		results, err = runTests(os.Args[2])
		for _, r := range results {
			pass = pass && r.Pass
		}
		out = results
	case os.Args[1] == "actions" && len(os.Args) == 3:
		var results []actionResult
		results, err = runActionTests(os.Args[2])
		for _, r := range results {
			pass = pass && r.Pass
		}
		out = results
	case os.Args[1] == "cm-actions" && (len(os.Args) == 4 || len(os.Args) == 5):
		out, err = serverActions(os.Args[2], os.Args[3], os.Args[4:])
	case os.Args[1] == "cm" && len(os.Args) >= 4:
		out, err = controllerHealth(os.Args[2], os.Args[3:])
	case os.Args[1] == "version" && len(os.Args) == 2:
		out = versions()
	default:
		err = errors.New(usage)
	}
	if err != nil {
		fail(err)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		fail(err)
	}
	if !pass {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argocd-health:", err)
	os.Exit(2)
}
