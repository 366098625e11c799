package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/argoproj/gitops-engine/pkg/diff"
	jsonpatch "github.com/evanphx/json-patch"
	"sigs.k8s.io/yaml"

	applicationpkg "github.com/argoproj/argo-cd/v3/pkg/apiclient/application"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
)

// actionTestFile is actions/action_test.yaml, read as util/lua's custom_actions_test.go reads it.
type actionTestFile struct {
	DiscoveryTests []struct {
		InputPath string                    `json:"inputPath"`
		Result    []v1alpha1.ResourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action               string            `json:"action"`
		InputPath            string            `json:"inputPath"`
		ExpectedOutputPath   string            `json:"expectedOutputPath"`
		ExpectedErrorMessage string            `json:"expectedErrorMessage"`
		Parameters           map[string]string `json:"parameters"`
	} `json:"actionTests"`
}

type actionResult struct {
	Kind      string `json:"kind"` // "discovery" or the action's name
	InputPath string `json:"inputPath"`
	Got       any    `json:"got,omitempty"`
	Error     string `json:"error,omitempty"`
	Pass      bool   `json:"pass"`
}

func sortedActions(actions []v1alpha1.ResourceAction) []v1alpha1.ResourceAction {
	out := append([]v1alpha1.ResourceAction{}, actions...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// runActionTests runs action_test.yaml as TestLuaResourceActionsScript does, but with DIR's own scripts (the
// test looks them up in the binary's embedded resource_customizations, where this project's are not). Its
// discovery check is stricter than Argo CD's (which asserts each action found is among the expected): the
// lists must be equal.
func runActionTests(dir string) ([]actionResult, error) {
	actionsDir := filepath.Join(dir, "actions")
	data, err := os.ReadFile(filepath.Join(actionsDir, "action_test.yaml"))
	if err != nil {
		return nil, err
	}
	var tests actionTestFile
	if err := yaml.Unmarshal(data, &tests); err != nil {
		return nil, fmt.Errorf("action_test.yaml: %w", err)
	}
	if len(tests.DiscoveryTests) == 0 || len(tests.ActionTests) == 0 {
		return nil, errors.New("action_test.yaml needs discovery and action tests")
	}
	discovery, err := os.ReadFile(filepath.Join(actionsDir, "discovery.lua"))
	if err != nil {
		return nil, err
	}
	var results []actionResult
	for _, test := range tests.DiscoveryTests {
		result := actionResult{Kind: "discovery", InputPath: test.InputPath}
		obj, err := readObject(filepath.Join(actionsDir, test.InputPath))
		var found []v1alpha1.ResourceAction
		if err == nil {
			found, err = lua.VM{UseOpenLibs: true}.ExecuteResourceActionDiscovery(obj, []string{string(discovery)})
		}
		if err != nil {
			result.Error = err.Error()
		} else {
			result.Got = sortedActions(found)
			want, _ := json.Marshal(sortedActions(test.Result))
			got, _ := json.Marshal(result.Got)
			result.Pass = string(want) == string(got)
		}
		results = append(results, result)
	}
	for _, test := range tests.ActionTests {
		result := actionResult{Kind: test.Action, InputPath: test.InputPath}
		result.Got, result.Pass, err = runAction(actionsDir, test.Action, test.InputPath, test.ExpectedOutputPath, test.Parameters)
		if test.ExpectedErrorMessage != "" {
			result.Pass = err != nil && err.Error() == test.ExpectedErrorMessage
		}
		if err != nil {
			result.Error = err.Error()
		}
		results = append(results, result)
	}
	return results, nil
}

// runAction runs one action without the standard libraries, as the API server does, and compares its output
// with the expected object as the test does (gitops-engine's diff).
func runAction(actionsDir, action, inputPath, expectedPath string, parameters map[string]string) (any, bool, error) {
	obj, err := readObject(filepath.Join(actionsDir, inputPath))
	if err != nil {
		return nil, false, err
	}
	script, err := os.ReadFile(filepath.Join(actionsDir, action, "action.lua"))
	if err != nil {
		return nil, false, err
	}
	var params []*applicationpkg.ResourceActionParameters
	for name, value := range parameters {
		params = append(params, &applicationpkg.ResourceActionParameters{Name: &name, Value: &value})
	}
	impacted, err := lua.VM{}.ExecuteResourceAction(obj, string(script), params)
	if err != nil {
		return nil, false, err
	}
	if len(impacted) != 1 || impacted[0].K8SOperation != lua.PatchOperation {
		return impacted, false, errors.New("an action of this kind patches the resource it runs on, and nothing else")
	}
	got := impacted[0].UnstructuredObj
	want, err := readObject(filepath.Join(actionsDir, expectedPath))
	if err != nil {
		return got.Object, false, err
	}
	result, err := diff.Diff(want, got, diff.WithNormalizer(diff.GetNoopNormalizer()))
	if err != nil {
		return got.Object, false, err
	}
	return got.Object, !result.Modified, nil
}

type serverAnswer struct {
	Actions []v1alpha1.ResourceAction `json:"actions"`
	Patch   json.RawMessage           `json:"patch,omitempty"`
}

// serverActions is what the API server does with the customizations of an argocd-cm: getAvailableActions
// (discovery, standard libraries off), and for an action RunResourceActionV2's patch, the JSON merge patch
// from the live object to the action's output that patchResource sends.
func serverActions(cmPath, resource string, action []string) (*serverAnswer, error) {
	overrides, err := resourceOverrides(cmPath)
	if err != nil {
		return nil, err
	}
	obj, err := readObject(resource)
	if err != nil {
		return nil, err
	}
	vm := lua.VM{ResourceOverrides: overrides}
	scripts, err := vm.GetResourceActionDiscovery(obj)
	if err != nil {
		return nil, err
	}
	answer := &serverAnswer{Actions: []v1alpha1.ResourceAction{}}
	if len(scripts) > 0 {
		found, err := vm.ExecuteResourceActionDiscovery(obj, scripts)
		if err != nil {
			return nil, err
		}
		answer.Actions = sortedActions(found)
	}
	if len(action) == 0 {
		return answer, nil
	}
	definition, err := vm.GetResourceAction(obj, action[0])
	if err != nil {
		return nil, err
	}
	impacted, err := vm.ExecuteResourceAction(obj, definition.ActionLua, nil)
	if err != nil {
		return nil, err
	}
	if len(impacted) != 1 || impacted[0].K8SOperation != lua.PatchOperation {
		return nil, errors.New("an action of this kind patches the resource it runs on, and nothing else")
	}
	live, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	changed, err := json.Marshal(impacted[0].UnstructuredObj.Object)
	if err != nil {
		return nil, err
	}
	answer.Patch, err = jsonpatch.CreateMergePatch(live, changed)
	return answer, err
}
