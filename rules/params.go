package rules

import (
	"encoding/json"
	"errors"
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

// Redacted stands for a value read from a Secret wherever values are shown.
const Redacted = "(redacted)"

// SecretReader reads one key of a Secret in the plan's namespace.
type SecretReader func(name, key string) (string, error)

// ErrNotRead, returned by a SecretReader, says the value is not to be known here (the admission
// webhook checks who may read a Secret, it does not read it): the parameter resolves to its type's
// zero value, shown redacted.
var ErrNotRead = errors.New("the Secret is not read here")

// ResolvedParams are one workflow entry's parameter values.
type ResolvedParams struct {
	// Values are typed as declared (string, int64 or bool), for templates and guards.
	Values map[string]any
	// Display are the values as shown in status: text, with Secret-sourced ones redacted.
	Display map[string]string
	// Secrets are the Secret-sourced values, to be scrubbed from messages and outputs.
	Secrets []string
}

// ParamLayer is a source of a workflow entry's parameter values. Each overrides the ones before
// it, and all of them the declared default: default < globalParams < stage params < execution
// params.
type ParamLayer int

const (
	LayerGlobal    ParamLayer = iota // the plan's spec.globalParams
	LayerStage                       // the stage workflow's params
	LayerExecution                   // the execution's spec.params
	paramLayers
)

// ParamSources are the values one workflow entry's parameters may take, by layer.
type ParamSources [paramLayers][]drv1.ParamValue

// SourcesOf gathers the values of the workflow entry sw of plan, with the execution's own (nil
// before there is an execution).
func SourcesOf(plan *drv1.DRPlanSpec, sw drv1.StageWorkflow, exec []drv1.ParamValue) ParamSources {
	return ParamSources{LayerGlobal: plan.GlobalParams, LayerStage: sw.Params, LayerExecution: exec}
}

// ParamSource says where a value comes from: its layer, and its index in that layer's list.
type ParamSource struct {
	Layer ParamLayer
	Index int
}

// Lookup returns the value a parameter takes and where it comes from: the highest layer that
// sets it (within a layer, its last entry). ok is false when no layer sets it: the declared
// default applies, if there is one.
func (s ParamSources) Lookup(name string) (v drv1.ParamValue, from ParamSource, ok bool) {
	for l := paramLayers - 1; l >= 0; l-- {
		for i := len(s[l]) - 1; i >= 0; i-- {
			if s[l][i].Name == name {
				return s[l][i], ParamSource{Layer: l, Index: i}, true
			}
		}
	}
	return drv1.ParamValue{}, ParamSource{}, false
}

// ResolveParams resolves a workflow's declared parameters from their sources (see ParamLayer).
// Values of names the workflow does not declare are ignored (globalParams are shared by every
// workflow). A required parameter without a value, a value that does not convert to its type
// and an unreadable Secret are errors naming the parameter.
func ResolveParams(decls []drv1.Parameter, read SecretReader, src ParamSources) (ResolvedParams, error) {
	r := ResolvedParams{Values: map[string]any{}, Display: map[string]string{}}
	for _, d := range decls {
		var (
			text   string
			set    bool
			secret bool
		)
		if d.Default != nil {
			s, err := DefaultString(d.Default)
			if err != nil {
				return r, fmt.Errorf("parameter %s: default %w", d.Name, err)
			}
			text, set = s, true
		}
		if v, _, ok := src.Lookup(d.Name); ok {
			text, set = v.Value, true
			if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
				ref := v.ValueFrom.SecretKeyRef
				s, err := read(ref.Name, ref.Key)
				if errors.Is(err, ErrNotRead) {
					r.Values[d.Name], r.Display[d.Name] = zeroValue(d.Type), Redacted
					continue
				}
				if err != nil {
					return r, fmt.Errorf("parameter %s: reading Secret %s key %s: %w", d.Name, ref.Name, ref.Key, err)
				}
				text, secret = s, true
			}
		}
		if !set {
			if d.Required {
				return r, fmt.Errorf("required parameter %s has no value: set it in the plan's globalParams, the stage's params or the execution's spec.params", d.Name)
			}
			r.Values[d.Name] = zeroValue(d.Type) // optional and unset: "", 0 or false
			continue
		}
		v, err := ConvertParam(d.Type, text)
		if err != nil {
			if secret {
				err = fmt.Errorf("the Secret's value is not a %s", TypeName(d.Type))
			}
			return r, fmt.Errorf("parameter %s: %w", d.Name, err)
		}
		r.Values[d.Name] = v
		r.Display[d.Name] = text
		if secret {
			r.Display[d.Name] = Redacted
			if text != "" {
				r.Secrets = append(r.Secrets, text)
			}
		}
	}
	return r, nil
}

// TypeName is a parameter type as users write it: string when the declaration names none.
func TypeName(t drv1.ParameterType) string {
	if t == "" {
		return string(drv1.ParameterTypeString)
	}
	return string(t)
}

func zeroValue(t drv1.ParameterType) any {
	switch t {
	case drv1.ParameterTypeInt:
		return int64(0)
	case drv1.ParameterTypeBool:
		return false
	}
	return ""
}
