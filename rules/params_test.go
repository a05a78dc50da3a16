package rules_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

func TestResolveParams(t *testing.T) {
	def := func(raw string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(raw)} }
	decls := []drv1.Parameter{
		{Name: "replicas", Type: "int", Default: def("3")},
		{Name: "port", Type: "string", Default: def(`"3306"`)},
		{Name: "enabled", Type: "bool"},
		{Name: "token", Required: true},
		{Name: "event"},
	}
	secretRef := func(name, key string) []drv1.ParamValue {
		return []drv1.ParamValue{{Name: "token", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: name, Key: key}}}}
	}
	read := func(name, key string) (string, error) {
		if name == "creds" && key == "token" {
			return "s3cr3t", nil
		}
		return "", errors.New(`secrets "` + name + `" not found`)
	}
	global := []drv1.ParamValue{{Name: "replicas", Value: "5"}, {Name: "token", Value: "plain"}, {Name: "undeclared", Value: "x"}}
	tests := []struct {
		name    string
		layers  [][]drv1.ParamValue
		values  map[string]any
		display map[string]string
		secrets []string
		err     string
	}{{
		name:    "defaults, then global, typed; optional unset is its zero value",
		layers:  [][]drv1.ParamValue{global},
		values:  map[string]any{"replicas": int64(5), "port": "3306", "enabled": false, "token": "plain", "event": ""},
		display: map[string]string{"replicas": "5", "port": "3306", "token": "plain"},
	}, {
		name:    "later layers win: stage params, then execution params",
		layers:  [][]drv1.ParamValue{global, {{Name: "replicas", Value: "2"}}, {{Name: "replicas", Value: "7"}, {Name: "enabled", Value: "true"}}},
		values:  map[string]any{"replicas": int64(7), "port": "3306", "enabled": true, "token": "plain", "event": ""},
		display: map[string]string{"replicas": "7", "port": "3306", "enabled": "true", "token": "plain"},
	}, {
		name:    "a Secret-sourced value is redacted in display and listed as a secret",
		layers:  [][]drv1.ParamValue{global, secretRef("creds", "token")},
		values:  map[string]any{"replicas": int64(5), "port": "3306", "enabled": false, "token": "s3cr3t", "event": ""},
		display: map[string]string{"replicas": "5", "port": "3306", "token": "(redacted)"},
		secrets: []string{"s3cr3t"},
	}, {
		name:   "required without a value",
		layers: nil,
		err:    "required parameter token has no value: set it in the plan's globalParams, the stage's params or the execution's spec.params",
	}, {
		name:   "a value that does not convert",
		layers: [][]drv1.ParamValue{global, {{Name: "replicas", Value: "five"}}},
		err:    `parameter replicas: "five" is not an int`,
	}, {
		name:   "an unreadable Secret",
		layers: [][]drv1.ParamValue{secretRef("missing", "token")},
		err:    `parameter token: reading Secret missing key token: secrets "missing" not found`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rules.ResolveParams(decls, read, tc.layers...)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.values, r.Values)
			assert.Equal(t, tc.display, r.Display)
			assert.Equal(t, tc.secrets, r.Secrets)
		})
	}
}

func TestTypeName(t *testing.T) {
	assert.Equal(t, "string", rules.TypeName(""), "a declaration without a type is a string")
	assert.Equal(t, "int", rules.TypeName(drv1.ParameterTypeInt))
	assert.Equal(t, "bool", rules.TypeName(drv1.ParameterTypeBool))
}
