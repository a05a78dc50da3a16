package rules

import (
	"encoding/json"
	"fmt"
	"strconv"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// DefaultString returns a parameter default as the string a plan would write for it: the guide
// writes defaults as 3, "3306", true or a URL, and they all mean the same as the quoted text.
func DefaultString(v *apiextensionsv1.JSON) (string, error) {
	var x any
	if err := json.Unmarshal(v.Raw, &x); err != nil {
		return "", fmt.Errorf("not valid JSON: %w", err)
	}
	switch x := x.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		// Keep integers as written (3, not 3e+00); json.Number keeps the exact text.
		return string(v.Raw), nil
	case nil:
		return "", fmt.Errorf("must be a scalar (string, number or bool), not null")
	default:
		return "", fmt.Errorf("must be a scalar (string, number or bool), not a list or map")
	}
}

// ConvertParam converts a parameter's text to its declared type: int64 for int, bool for bool,
// string for string (or an empty type).
func ConvertParam(t drv1.ParameterType, s string) (any, error) {
	switch t {
	case drv1.ParameterTypeString, "":
		return s, nil
	case drv1.ParameterTypeInt:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an int", s)
		}
		return i, nil
	case drv1.ParameterTypeBool:
		switch s {
		case "true", "True", "TRUE":
			return true, nil
		case "false", "False", "FALSE":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not a bool (use true or false)", s)
	default:
		return nil, fmt.Errorf("unknown parameter type %q (use string, int or bool)", t)
	}
}
