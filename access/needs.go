package access

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/lru"
	"github.com/bkbcs/drplan-controller/runplan"
	"github.com/bkbcs/drplan-controller/templates"
)

// Need is one right a run needs: Verb on an object (or, with Name "", on every object of its
// resource in Namespace; Namespace "" is cluster-scoped), and For, why.
type Need struct {
	Verb        string
	Group       string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	// For says what needs it: `stage "s", workflow ns/w, action "a"`, `parameter p`, ....
	For string
}

// resourceName is the resource as kubectl spells it: "configmaps", "deployments.apps",
// "serviceaccounts/token".
func (n Need) resourceName() string {
	r := n.Resource
	if n.Group != "" {
		r += "." + n.Group
	}
	if n.Subresource != "" {
		r += "/" + n.Subresource
	}
	return r
}

// named reports whether the need is for one object: a create is never (the API server authorizes
// a create without the new object's name).
func (n Need) named() bool { return n.Name != "" && n.Verb != "create" }

// reads reports whether the need only reads (get, list, watch).
func (n Need) reads() bool { return n.Verb == "get" || n.Verb == "list" || n.Verb == "watch" }

// String is the right in words: `create configmaps in namespace "kube-system"`.
func (n Need) String() string {
	var b strings.Builder
	b.WriteString(n.Verb + " " + n.resourceName())
	if n.named() {
		fmt.Fprintf(&b, " %q", n.Name)
	}
	if n.Namespace != "" {
		fmt.Fprintf(&b, " in namespace %q", n.Namespace)
	} else {
		b.WriteString(" (cluster-scoped)")
	}
	return b.String()
}

// Mapper finds the resource of a kind: the controller's discovery-backed RESTMapper.
type Mapper interface {
	RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error)
}

// verbs of each operation on an object: what the runners' calls need (docs/security.md).
var (
	createVerbs = []string{"create", "get"}   // a create that finds the object reads it back
	applyVerbs  = []string{"patch", "create"} // server-side apply creates what is missing
	patchVerbs  = []string{"patch"}           //
	deleteVerbs = []string{"delete", "get"}   // reads it back when the UID precondition fails
	waitVerbs   = []string{"list", "watch"}   // one object's watch, by name
	jobVerbs    = []string{"create", "get", "list", "watch", "delete"}
	// A Localization Patch reads the overrides it merges its own into.
	localizationPatchVerbs = []string{"patch", "get"}
	opVerbs                = map[string][]string{
		string(drv1.OperationCreate): createVerbs, string(drv1.OperationApply): applyVerbs,
		string(drv1.OperationPatch): patchVerbs, string(drv1.OperationDelete): deleteVerbs,
	}
)

// RunNeeds lists the rights every action of a prepared run needs (its body, its waitFor, or, in a
// Revert, the delete of the object the reverted run created), in action order. namespace is the
// execution's, where objects that name none are made. An action whose needs cannot be told yet
// (a kind the API server does not serve until an earlier action installs its CRD) is left out:
// it is checked before it starts (ActionNeeds), and fails there if it still cannot be.
func RunNeeds(prep *runplan.Prepared, mapper Mapper, namespace string) []Need {
	var out []Need
	mapper = &memoMapper{Mapper: mapper, seen: map[schema.GroupVersionKind]*meta.RESTMapping{}}
	for i := range prep.Actions {
		if needs, err := ActionNeeds(prep, i, mapper, namespace); err == nil {
			out = append(out, needs...)
		}
	}
	return out
}

// ActionNeeds lists the rights the prepared run's action i needs: none for a step a Revert skips.
func ActionNeeds(prep *runplan.Prepared, i int, mapper Mapper, namespace string) ([]Need, error) {
	if skipped(prep, i) {
		return nil, nil
	}
	where := Where(prep, i)
	a := prep.Actions[i]
	var objs []object
	var err error
	if a.Undo != nil {
		var o object
		o, err = refObject(*a.Undo, mapper)
		o.verbs = deleteVerbs
		objs = []object{o}
	} else {
		objs, err = bodyObjects(a.Body, mapper, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if a.Wait != nil && a.Undo == nil && len(objs) == 1 {
		w := objs[0]
		w.verbs = waitVerbs
		objs = append(objs, w)
	}
	return needsOf(objs, where), nil
}

// skipped reports whether action i of a prepared run is a step its Revert skips.
func skipped(prep *runplan.Prepared, i int) bool {
	addr := prep.Plan.Addr(i)
	w := prep.Plan.Stages[addr.Stage].Workflows[addr.Workflow]
	return addr.Action < len(w.ActionSkip) && w.ActionSkip[addr.Action] != ""
}

// memoMapper remembers the mappings of one RunNeeds: a run's actions name few kinds.
type memoMapper struct {
	Mapper
	seen map[schema.GroupVersionKind]*meta.RESTMapping
}

func (m *memoMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if len(versions) != 1 {
		return m.Mapper.RESTMapping(gk, versions...)
	}
	gvk := gk.WithVersion(versions[0])
	if r, ok := m.seen[gvk]; ok {
		return r, nil
	}
	r, err := m.Mapper.RESTMapping(gk, versions...)
	if err == nil {
		m.seen[gvk] = r
	}
	return r, err
}

// Where names action i of a prepared run: `stage "s", workflow ns/w, action "a"`.
func Where(prep *runplan.Prepared, i int) string {
	addr := prep.Plan.Addr(i)
	s := prep.Plan.Stages[addr.Stage]
	w := s.Workflows[addr.Workflow]
	return fmt.Sprintf("stage %q, workflow %s, action %q", s.Name, w.Ref.NamespaceOr(prep.Plan.Namespace)+"/"+w.Ref.Name, w.Actions[addr.Action])
}

// object is what an action does to one object: its resource, where, and the verbs.
type object struct {
	group, resource, namespace, name string
	verbs                            []string
}

// bodyObjects are the objects an action body touches (none for HTTP).
func bodyObjects(b drv1.ActionBody, mapper Mapper, namespace string) ([]object, error) {
	switch {
	case b.Type == drv1.ActionTypeKubernetesResource && b.Resource != nil:
		op := b.Resource.Operation
		id, err := identify(b.Resource.Manifest, op)
		if err != nil {
			return nil, err
		}
		o, err := mapped(mapper, id.gvk, id.namespace, id.name, namespace)
		o.verbs = opVerbs[string(op)]
		return []object{o}, err
	case b.Type == drv1.ActionTypeJob && b.Job != nil:
		return []object{{group: "batch", resource: "jobs", namespace: or(b.Job.Namespace, namespace), name: b.Job.Name, verbs: jobVerbs}}, nil
	case b.Type == drv1.ActionTypeLocalization && b.Localization != nil:
		l := b.Localization
		verbs := opVerbs[string(l.Operation)]
		if string(l.Operation) == string(drv1.OperationPatch) {
			verbs = localizationPatchVerbs
		}
		return []object{{group: clusternetGroup, resource: "localizations", namespace: or(or(l.Namespace, l.ClusterNamespace), namespace),
			name: l.Name, verbs: verbs}}, nil
	case b.Type == drv1.ActionTypeSubscription && b.Subscription != nil:
		s := b.Subscription
		return []object{{group: clusternetGroup, resource: "subscriptions", namespace: or(s.Namespace, namespace),
			name: s.Name, verbs: opVerbs[string(s.Operation)]}}, nil
	}
	return nil, nil
}

// BodyNeeds lists the rights an action body needs (its waitFor aside), for the reason why: the
// admission webhook's look at a workflow's static manifests.
func BodyNeeds(b drv1.ActionBody, mapper Mapper, namespace, why string) ([]Need, error) {
	objs, err := bodyObjects(b, mapper, namespace)
	if err != nil {
		return nil, err
	}
	return needsOf(objs, why), nil
}

// needsOf is every verb on every object, for why.
func needsOf(objs []object, why string) []Need {
	var out []Need
	for _, o := range objs {
		for _, v := range o.verbs {
			out = append(out, Need{Verb: v, Group: o.group, Resource: o.resource, Namespace: o.namespace, Name: o.name, For: why})
		}
	}
	return out
}

// identity is what names the object of a manifest: its kind, namespace and name.
type identity struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

// identities keeps the identities of the manifests read, by the SHA-256 of operation and
// manifest: a run's manifests are read at admission, at start and before each action, as the
// runner reads them (templates.CheckManifest).
var identities = lru.New[[sha256.Size]byte, identity](4096)

// identify reads a rendered manifest as the runner does, for its identity.
func identify(manifest string, op drv1.ResourceOperation) (identity, error) {
	key := sha256.Sum256([]byte(string(op) + "\x00" + manifest))
	if id, ok := identities.Get(key); ok {
		return id, nil
	}
	obj, ferr := templates.CheckManifest(field.NewPath("resource", "manifest"), manifest, op)
	if ferr != nil {
		return identity{}, fmt.Errorf("%s: %s", ferr.Field, ferr.Detail)
	}
	gv, err := schema.ParseGroupVersion(obj.GetAPIVersion())
	if err != nil {
		return identity{}, err
	}
	id := identity{gvk: gv.WithKind(obj.GetKind()), namespace: obj.GetNamespace(), name: obj.GetName()}
	identities.Add(key, id)
	return id, nil
}

// clusternetGroup is the API group of Localization and Subscription actions' objects.
const clusternetGroup = "apps.clusternet.io"

// refObject is the object a resource reference names.
func refObject(ref drv1.ResourceReference, mapper Mapper) (object, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return object{}, err
	}
	return mapped(mapper, gv.WithKind(ref.Kind), ref.Namespace, ref.Name, "")
}

// mapped finds gvk's resource and settles the namespace as the runner does: a namespaced
// object without one is made in defaultNamespace; a cluster-scoped one has none.
func mapped(mapper Mapper, gvk schema.GroupVersionKind, namespace, name, defaultNamespace string) (object, error) {
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return object{}, fmt.Errorf("the API server serves no kind %s in %s: %w", gvk.Kind, gvk.GroupVersion(), err)
	}
	o := object{group: m.Resource.Group, resource: m.Resource.Resource, name: name}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		o.namespace = or(namespace, defaultNamespace)
	}
	return o, nil
}

func or(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// Unreviewable returns the first need a SubjectAccessReview cannot stand for, with why: the RBAC
// kinds (the API server's escalate and bind checks cannot be made for another user) and the
// subresources that hand out credentials or a shell. A plan acting as a ServiceAccount may use
// them, as the API server then checks the ServiceAccount itself.
func Unreviewable(needs []Need) (Need, string, bool) {
	for _, n := range needs {
		switch {
		case n.Group == "rbac.authorization.k8s.io" && slices.Contains(rbacResources, n.Resource):
			return n, fmt.Sprintf("%s: RBAC objects (%s) are not made for the requester of a plan without a serviceAccountName; give the plan one that may manage them", n.For, n.resourceName()), true
		case slices.Contains(refusedSubresources, n.Subresource):
			return n, fmt.Sprintf("%s: the %s subresource is not used for the requester of a plan without a serviceAccountName; give the plan one that may use it", n.For, n.Subresource), true
		}
	}
	return Need{}, "", false
}

var (
	rbacResources       = []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
	refusedSubresources = []string{"token", "exec", "attach", "proxy", "approval"}
)
