package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	appsapi "github.com/clusternet/clusternet/pkg/apis/apps/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// ClusternetRunner runs Localization and Subscription actions. It builds Clusternet's own typed
// object (apps.clusternet.io/v1alpha1) from the action and creates, patches or deletes it as the
// KubernetesResource runner does: as the plan's identity, labelled with the plan and execution,
// an existing object made by this execution counting as created, a missing one as deleted.
//
// A Patch is a JSON merge patch of what the action sets: a Localization's priority,
// overridePolicy and feed are set when given, and its overrides are changed by name
// (MergeOverrides: the others are kept); a Subscription's feeds, subscribers and scheduling
// replace its own when given.
type ClusternetRunner struct {
	resources *ResourceRunner
}

// NewClusternetRunner runs Clusternet actions through resources.
func NewClusternetRunner(resources *ResourceRunner) *ClusternetRunner {
	return &ClusternetRunner{resources: resources}
}

func (c *ClusternetRunner) Run(ctx context.Context, req Request) (Result, error) {
	var (
		op  drv1.ClusternetOperation
		obj any
		err error
	)
	switch b := req.Body; {
	case b.Type == drv1.ActionTypeLocalization && b.Localization != nil && b.Localization.Operation == "Patch":
		return c.patchLocalization(ctx, req)
	case b.Type == drv1.ActionTypeLocalization && b.Localization != nil:
		op = b.Localization.Operation
		obj, err = LocalizationObject(b.Localization)
	case b.Type == drv1.ActionTypeSubscription && b.Subscription != nil:
		op = b.Subscription.Operation
		obj, err = SubscriptionObject(b.Subscription)
	default:
		return Result{}, fmt.Errorf("clusternet runner: want a Localization or Subscription action with its block, got type %q", b.Type)
	}
	if err != nil {
		return Result{}, err
	}
	manifest, err := json.Marshal(obj)
	if err != nil {
		return Result{}, err
	}
	req.Body = drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
		Resource: &drv1.ResourceAction{Operation: drv1.ResourceOperation(op), Manifest: string(manifest)}}
	return c.resources.Run(ctx, req)
}

var clusternetAPIVersion = appsapi.SchemeGroupVersion.String()

// patchLocalization runs a Localization Patch: it reads the Localization, merges the action's
// overrides into its own (MergeOverrides) and merge-patches the whole list, with what else the
// action sets, on the resourceVersion it read: a change made in between is a conflict, and the
// read, the merge and the patch are done again.
func (c *ClusternetRunner) patchLocalization(ctx context.Context, req Request) (Result, error) {
	calls := c.resources.clients.apiCalls(c.resources.clients.APIRetryTimeout())
	res, err := c.patchLocalizationWith(ctx, calls, req)
	return calls.report(res, err)
}

func (c *ClusternetRunner) patchLocalizationWith(ctx context.Context, calls *apiCalls, req Request) (Result, error) {
	l := req.Body.Localization
	partialObj, err := LocalizationObject(l)
	if err != nil {
		return Result{}, err
	}
	obj := &unstructured.Unstructured{Object: partialObj.(map[string]any)}
	t, err := c.resources.target(ctx, calls, "localization", req.ServiceAccount, obj, req.Execution.Namespace)
	if err != nil {
		return Result{}, err
	}
	var res Result
	patched, err := callAPI(ctx, calls, true, func(ctx context.Context) (*unstructured.Unstructured, error) {
		cur, err := t.client.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		data, err := localizationPatch(cur, obj, l.Overrides)
		if err != nil {
			return nil, err
		}
		return t.client.Patch(ctx, obj.GetName(), types.MergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager})
	})
	if apierrors.IsNotFound(err) {
		return res, fmt.Errorf("patch %s%s: %w: Patch changes an existing object, which must exist (use Create to make it)", t.desc, t.as, err)
	}
	if err != nil {
		return res, t.fail("patch", err)
	}
	res.Message = t.desc + " patched"
	res.ResourceRef = t.ref(patched)
	return res, nil
}

// localizationPatch is the merge patch of a Localization Patch onto cur: what want's spec sets,
// the overrides merged into cur's, and cur's resourceVersion.
func localizationPatch(cur, want *unstructured.Unstructured, overrides []drv1.Override) ([]byte, error) {
	existing, _, err := unstructured.NestedSlice(cur.Object, "spec", "overrides")
	if err != nil {
		return nil, fmt.Errorf("read the overrides of Localization %s/%s: %w", cur.GetNamespace(), cur.GetName(), err)
	}
	merged, err := MergeOverrides(existing, overrides)
	if err != nil {
		return nil, err
	}
	spec := map[string]any{}
	if s, ok := want.Object["spec"].(map[string]any); ok {
		maps.Copy(spec, s)
	}
	spec["overrides"] = merged
	return json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": cur.GetResourceVersion()}, "spec": spec})
}

// MergeOverrides is what a Localization Patch makes of a Localization's overrides (existing, as
// the API server returns them): each override of the patch replaces the first of its name in its
// place (and any later namesake goes), or is added at the end; one with remove: true takes every
// override of its name away (with none, there is nothing to do). The others are kept as they
// are, in their order.
func MergeOverrides(existing []any, patch []drv1.Override) ([]any, error) {
	out := slices.Clone(existing)
	for i, o := range patch {
		if o.Name == "" {
			return nil, fmt.Errorf("overrides[%d]: a Patch changes overrides by name: name it", i)
		}
		named := func(x any) bool { return overrideName(x) == o.Name }
		if o.Remove {
			out = slices.DeleteFunc(out, named)
			continue
		}
		cfg, err := overrideConfig(i, o)
		if err != nil {
			return nil, err
		}
		at := slices.IndexFunc(out, named)
		if at < 0 {
			out = append(out, cfg)
			continue
		}
		out[at] = cfg
		out = append(out[:at+1], slices.DeleteFunc(out[at+1:], named)...)
	}
	return out, nil
}

// overrideName is the name of an override, as read from the API server or made by
// overrideConfig.
func overrideName(x any) string {
	switch o := x.(type) {
	case map[string]any:
		name, _ := o["name"].(string)
		return name
	case appsapi.OverrideConfig:
		return o.Name
	}
	return ""
}

// LocalizationObject is the Localization an action creates, or the part of it a Patch or Delete
// names: Clusternet's typed object for a Create, a map holding only what is set otherwise. A
// Patch's overrides are not in it: they are merged into the Localization's own (MergeOverrides).
func LocalizationObject(l *drv1.LocalizationAction) (any, error) {
	ns := l.Namespace
	if ns == "" {
		ns = l.ClusterNamespace // the guide's parameterised example
	}
	overrides, err := overrideConfigs(l.Overrides)
	if err != nil {
		return nil, err
	}
	meta := metav1.ObjectMeta{Name: l.Name, Namespace: ns}
	if l.Operation == "Create" {
		loc := &appsapi.Localization{
			TypeMeta:   metav1.TypeMeta{APIVersion: clusternetAPIVersion, Kind: "Localization"},
			ObjectMeta: meta,
			Spec: appsapi.LocalizationSpec{OverridePolicy: appsapi.OverridePolicy(l.OverridePolicy), Overrides: overrides,
				Feed: feed(l.Feed)},
		}
		if l.Priority != nil {
			loc.Spec.Priority = *l.Priority
		}
		return loc, nil
	}
	spec := map[string]any{}
	if l.Operation == "Patch" {
		if l.Priority != nil {
			spec["priority"] = *l.Priority
		}
		if l.OverridePolicy != "" {
			spec["overridePolicy"] = l.OverridePolicy
		}
		if l.Feed != nil {
			spec["feed"] = feed(l.Feed)
		}
	}
	return partial("Localization", meta, spec), nil
}

// SubscriptionObject is the Subscription an action creates, or the part a Patch or Delete names.
func SubscriptionObject(s *drv1.SubscriptionAction) (any, error) {
	meta := metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}
	var dividing *appsapi.DividingScheduling
	if s.DividingScheduling != nil && len(s.DividingScheduling.Raw) > 0 {
		dividing = &appsapi.DividingScheduling{}
		if err := json.Unmarshal(s.DividingScheduling.Raw, dividing); err != nil {
			return nil, fmt.Errorf("subscription.dividingScheduling: %w", err)
		}
	}
	feeds := make([]appsapi.Feed, len(s.Feeds))
	for i := range s.Feeds {
		feeds[i] = feed(&s.Feeds[i])
	}
	subscribers := make([]appsapi.Subscriber, len(s.Subscribers))
	for i, sub := range s.Subscribers {
		subscribers[i] = appsapi.Subscriber{ClusterAffinity: sub.ClusterAffinity, Weight: sub.Weight}
	}
	if s.Operation == "Create" {
		return &appsapi.Subscription{
			TypeMeta:   metav1.TypeMeta{APIVersion: clusternetAPIVersion, Kind: "Subscription"},
			ObjectMeta: meta,
			Spec: appsapi.SubscriptionSpec{SchedulingStrategy: appsapi.SchedulingStrategyType(s.SchedulingStrategy),
				DividingScheduling: dividing, Subscribers: subscribers, Feeds: feeds},
		}, nil
	}
	spec := map[string]any{}
	if s.Operation == "Patch" {
		if len(s.Feeds) > 0 {
			spec["feeds"] = feeds
		}
		if len(s.Subscribers) > 0 {
			spec["subscribers"] = subscribers
		}
		if s.SchedulingStrategy != "" {
			spec["schedulingStrategy"] = s.SchedulingStrategy
		}
		if dividing != nil {
			spec["dividingScheduling"] = dividing
		}
	}
	return partial("Subscription", meta, spec), nil
}

// partial is a Clusternet object holding only what a Patch sets (or, for a Delete, its name).
func partial(kind string, meta metav1.ObjectMeta, spec map[string]any) map[string]any {
	obj := map[string]any{"apiVersion": clusternetAPIVersion, "kind": kind,
		"metadata": map[string]any{"name": meta.Name, "namespace": meta.Namespace}}
	if len(spec) > 0 {
		obj["spec"] = spec
	}
	return obj
}

func feed(f *drv1.Feed) appsapi.Feed {
	if f == nil {
		return appsapi.Feed{}
	}
	return appsapi.Feed{APIVersion: f.APIVersion, Kind: f.Kind, Name: f.Name, Namespace: f.Namespace}
}

// overrideConfigs turns the action's overrides into Clusternet's, leaving out those a Patch
// removes.
func overrideConfigs(in []drv1.Override) ([]appsapi.OverrideConfig, error) {
	out := make([]appsapi.OverrideConfig, 0, len(in))
	for i, o := range in {
		if o.Remove {
			continue
		}
		cfg, err := overrideConfig(i, o)
		if err != nil {
			return nil, err
		}
		out = append(out, cfg)
	}
	return out, nil
}

// overrideConfig turns the action's override i into Clusternet's. A value written as YAML (the
// guide writes JSON patches as YAML lists) is passed on as JSON, which Clusternet reads whatever
// the type; the guide's shorthand {path, value} becomes a JSONPatch replace of that path.
func overrideConfig(i int, o drv1.Override) (appsapi.OverrideConfig, error) {
	name := o.Name
	if name == "" {
		name = fmt.Sprintf("override-%d", i)
	}
	cfg := appsapi.OverrideConfig{Name: name, Type: appsapi.OverrideType(o.Type)}
	if o.Path != "" {
		var v any
		if err := yaml.Unmarshal([]byte(o.Value), &v); err != nil {
			return cfg, fmt.Errorf("overrides[%d] (%s): value is not valid YAML: %w", i, name, err)
		}
		patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": o.Path, "value": v}})
		if err != nil {
			return cfg, err
		}
		cfg.Type, cfg.Value = appsapi.JSONPatchType, string(patch)
		return cfg, nil
	}
	value, err := yaml.YAMLToJSON([]byte(o.Value))
	if err != nil {
		return cfg, fmt.Errorf("overrides[%d] (%s): value is not valid YAML or JSON: %w", i, name, err)
	}
	cfg.Value = string(value)
	return cfg, nil
}
