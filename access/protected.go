package access

import (
	"fmt"
	"strings"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Protected names the controller's own objects, which no action may create, change or delete,
// whoever asks and whatever the plan acts as: everything in the controller's namespace and that
// namespace itself, its webhook configurations, the project's CRDs and the APIServices of its
// group, and the ClusterRole and ClusterRoleBinding that grant its rights.
type Protected struct {
	// Namespace is the controller's own ("" when it runs outside the cluster with none).
	Namespace string
	// WebhookConfiguration names its Validating and MutatingWebhookConfiguration.
	WebhookConfiguration string
	// ClusterRole names its ClusterRole and ClusterRoleBinding.
	ClusterRole string
}

// OffLimitsReason ends the refusal of an action on one of the controller's own objects.
const OffLimitsReason = "objects of the drplan-controller itself are off limits to actions"

// Check returns the first need that touches one of the controller's objects, as an error naming
// it; nil when none does.
func (p Protected) Check(needs []Need) error {
	for _, n := range needs {
		if p.covers(n) {
			what := n.resourceName()
			if n.Name != "" {
				what += " " + n.Name
			}
			if n.Namespace != "" {
				what += " in namespace " + n.Namespace
			}
			return fmt.Errorf("%s may not %s %s: %s", n.For, n.Verb, what, OffLimitsReason)
		}
	}
	return nil
}

func (p Protected) covers(n Need) bool {
	if n.reads() {
		// Reads are the requester's own business (a waitFor on a Lease hurts nobody); what is
		// protected is every write, and reads of Secrets, which a waitFor's messages would show.
		if !(n.Group == "" && n.Resource == "secrets") {
			return false
		}
	}
	ownGroup := "." + drv1.GroupName
	switch {
	case p.Namespace != "" && n.Namespace == p.Namespace:
		return true
	case n.Namespace != "":
		return false
	case n.Group == "" && n.Resource == "namespaces":
		return p.Namespace != "" && n.Name == p.Namespace
	case n.Group == "admissionregistration.k8s.io" && (n.Resource == "validatingwebhookconfigurations" || n.Resource == "mutatingwebhookconfigurations"):
		return n.Name == p.WebhookConfiguration
	case n.Group == "apiextensions.k8s.io" && n.Resource == "customresourcedefinitions":
		return strings.HasSuffix(n.Name, ownGroup)
	case n.Group == "apiregistration.k8s.io" && n.Resource == "apiservices":
		return strings.HasSuffix(n.Name, ownGroup)
	case n.Group == "rbac.authorization.k8s.io" && (n.Resource == "clusterroles" || n.Resource == "clusterrolebindings"):
		return n.Name == p.ClusterRole
	}
	return false
}
