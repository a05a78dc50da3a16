package actions

import (
	"context"
	"encoding/json"
	"fmt"

	appsapi "github.com/clusternet/clusternet/pkg/apis/apps/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// ClusternetRunner runs Localization and Subscription actions. It builds Clusternet's own typed
// object (apps.clusternet.io/v1alpha1) from the action and creates, patches or deletes it as the
// KubernetesResource runner does: as the plan's identity, labelled with the plan and execution,
// an existing object made by this execution counting as created, a missing one as deleted.
//
// A Patch is a JSON merge patch of what the action sets: a Localization's overrides replace the
// existing list (a rollback sets the list back), its priority and overridePolicy are set when
// given; a Subscription's feeds, subscribers and scheduling likewise.
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

// LocalizationObject is the Localization an action creates, or the part of it a Patch or Delete
// names: Clusternet's typed object for a Create, a map holding only what is set otherwise.
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
		if len(overrides) > 0 {
			spec["overrides"] = overrides
		}
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

// overrideConfigs turns the action's overrides into Clusternet's. A value written as YAML (the
// guide writes JSON patches as YAML lists) is passed on as JSON, which Clusternet reads whatever
// the type; the guide's shorthand {path, value} becomes a JSONPatch replace of that path.
func overrideConfigs(in []drv1.Override) ([]appsapi.OverrideConfig, error) {
	out := make([]appsapi.OverrideConfig, 0, len(in))
	for i, o := range in {
		name := o.Name
		if name == "" {
			name = fmt.Sprintf("override-%d", i)
		}
		cfg := appsapi.OverrideConfig{Name: name, Type: appsapi.OverrideType(o.Type)}
		if o.Path != "" {
			var v any
			if err := yaml.Unmarshal([]byte(o.Value), &v); err != nil {
				return nil, fmt.Errorf("overrides[%d] (%s): value is not valid YAML: %w", i, name, err)
			}
			patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": o.Path, "value": v}})
			if err != nil {
				return nil, err
			}
			cfg.Type, cfg.Value = appsapi.JSONPatchType, string(patch)
		} else {
			value, err := yaml.YAMLToJSON([]byte(o.Value))
			if err != nil {
				return nil, fmt.Errorf("overrides[%d] (%s): value is not valid YAML or JSON: %w", i, name, err)
			}
			cfg.Value = string(value)
		}
		out = append(out, cfg)
	}
	return out, nil
}
