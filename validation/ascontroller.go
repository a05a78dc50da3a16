package validation

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

// An action of a plan without a serviceAccountName acts as the controller, whose user the
// admission webhooks trust for the records of who asked (docs/admission.md). Until every action
// is authorized for the requester, such an action may not touch the controller's own API group:
// it could forge an execution's requester, a plan's pending trigger or an execution's decisions.

// AsControllerReason is why such an action is refused.
const AsControllerReason = "acts as the controller, which may not create, change or delete " + drv1.GroupName +
	" objects for a plan; give the plan a serviceAccountName"

// OwnGroup reports whether apiVersion ("group/version") is of the controller's API group.
func OwnGroup(apiVersion string) bool {
	gv, err := schema.ParseGroupVersion(apiVersion)
	return err == nil && gv.Group == drv1.GroupName
}

// AsControllerError is the refusal of the action to operate on kind name (of the controller's
// API group) as the controller.
func AsControllerError(action, op, kind, name string) error {
	return fmt.Errorf("action %q (%s %s %s) %s", action, op, kind, name, AsControllerReason)
}

// AsControllerActions lists the KubernetesResource actions (and rollbacks) of the workflows the
// plan references whose manifest, rendered with placeholder values, names an object of the
// controller's API group: with no serviceAccountName on the plan they would act as the
// controller. A manifest whose apiVersion is a template is caught when it runs. Workflows that
// cannot be found are skipped (the plan cannot run then anyway).
func AsControllerActions(plan *drv1.DRPlan, workflows WorkflowGetter) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range plan.Spec.EffectiveStages() {
		for _, sw := range s.Workflows {
			ns := sw.WorkflowRef.NamespaceOr(plan.Namespace)
			key := ns + "/" + sw.WorkflowRef.Name
			if seen[key] {
				continue
			}
			seen[key] = true
			wf, ok := workflows.GetWorkflow(ns, sw.WorkflowRef.Name)
			if !ok {
				continue
			}
			placeholders := placeholderParams(wf.Spec.Parameters)
			for i := range wf.Spec.Actions {
				a := &wf.Spec.Actions[i]
				path := field.NewPath("spec", "actions").Index(i)
				bodies := []struct {
					path *field.Path
					body *drv1.ActionBody
				}{{path, &a.ActionBody}}
				if a.Rollback != nil {
					bodies = append(bodies, struct {
						path *field.Path
						body *drv1.ActionBody
					}{path.Child("rollback"), &a.Rollback.ActionBody})
				}
				for _, pb := range bodies {
					p, b := pb.path, pb.body
					if b.Resource == nil {
						continue
					}
					rendered, err := renderPlaceholder(b.Resource.Manifest, placeholders)
					if err != nil {
						continue // refused by the workflow's own validation
					}
					obj, ferr := templates.CheckManifest(p.Child("resource", "manifest"), rendered, b.Resource.Operation)
					if ferr != nil || !OwnGroup(obj.GetAPIVersion()) {
						continue
					}
					out = append(out, fmt.Sprintf("DRWorkflow %s %s (action %q: %s %s)", key, p, a.Name, b.Resource.Operation, obj.GetKind()))
				}
			}
		}
	}
	return out
}
