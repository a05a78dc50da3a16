package actions

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
	"github.com/bkbcs/drplan-controller/validation"
)

// ResourceRunner runs KubernetesResource actions: it creates, applies (server-side), merge-patches
// or deletes the one object of the action's manifest, as the action's ServiceAccount if it has
// one.
//
// Objects it creates or applies are labelled with the plan and the execution, and a
// metadata.generateName becomes a name fixed per execution and action, so a retry, or a run after
// a controller restart, finds the object the first attempt made instead of making another.
//
// Its API calls retry transient errors (TransientAPIError) with backoff, for the factory's
// APIRetryTimeout (a Job action's for its timeout), and the action's message says so.
type ResourceRunner struct {
	clients *ClientFactory
}

var _ Runner = (*ResourceRunner)(nil)

// NewResourceRunner returns a runner that gets its clients from f.
func NewResourceRunner(f *ClientFactory) *ResourceRunner {
	return &ResourceRunner{clients: f}
}

// ownGroupRefused reports whether an action may not touch an object of apiVersion: one acting as
// the controller (no ServiceAccount) may not touch the controller's own API group, whose records of
// who asked the admission webhooks trust the controller's user to write (validation.OwnGroup).
func ownGroupRefused(serviceAccount, apiVersion string) bool {
	return serviceAccount == "" && validation.OwnGroup(apiVersion)
}

// resourceTarget is a resolved manifest: the object and the client of its resource.
type resourceTarget struct {
	obj    *unstructured.Unstructured
	client dynamic.ResourceInterface
	desc   string // "ConfigMap production/dr-config", for messages
	as     string // " as ServiceAccount ns/name", or "" for the controller's own identity
}

// fail wraps an API error with what was being done to which object, and as whom.
func (t *resourceTarget) fail(verb string, err error) error {
	return fmt.Errorf("%s %s%s: %w", verb, t.desc, t.as, err)
}

// ref identifies obj, as returned by the API server; uid is left empty if obj is nil.
func (t *resourceTarget) ref(obj *unstructured.Unstructured) *drv1.ResourceReference {
	r := &drv1.ResourceReference{
		APIVersion: t.obj.GetAPIVersion(),
		Kind:       t.obj.GetKind(),
		Name:       t.obj.GetName(),
		Namespace:  t.obj.GetNamespace(),
	}
	if obj != nil {
		r.UID = string(obj.GetUID())
	}
	return r
}

// Run runs req's KubernetesResource action. A failed action returns an error naming the object
// and, for API errors, keeping the API server's own text (a Forbidden says who was refused what).
// Retries of transient errors are counted in the result and noted at the end of its message (or
// of the error).
func (r *ResourceRunner) Run(ctx context.Context, req Request) (Result, error) {
	calls := r.clients.apiCalls(r.clients.APIRetryTimeout())
	res, err := r.run(ctx, req, calls)
	return calls.report(res, err)
}

// run runs req's KubernetesResource action, its API calls retried by calls.
func (r *ResourceRunner) run(ctx context.Context, req Request, calls *apiCalls) (Result, error) {
	if req.Body.Type != drv1.ActionTypeKubernetesResource || req.Body.Resource == nil {
		return Result{}, fmt.Errorf("resource runner: want a %s action with a resource block, got type %q", drv1.ActionTypeKubernetesResource, req.Body.Type)
	}
	op := req.Body.Resource.Operation
	obj, ferr := templates.CheckManifest(field.NewPath("resource", "manifest"), req.Body.Resource.Manifest, op)
	if ferr != nil {
		return Result{}, fmt.Errorf("%s: %s", ferr.Field, ferr.Detail)
	}
	if obj.GetName() == "" { // CheckManifest admits a generateName for Create and Apply only
		obj.SetName(DeterministicName(obj.GetGenerateName(), req.Execution.UID, req.ActionID))
	}
	if op == drv1.OperationCreate || op == drv1.OperationApply {
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[drv1.LabelPlan] = drv1.LabelValue(req.Execution.PlanName)
		labels[drv1.LabelExecution] = drv1.LabelValue(req.Execution.Name)
		if req.Execution.UID != "" {
			labels[drv1.LabelExecutionUID] = string(req.Execution.UID)
		}
		obj.SetLabels(labels)
	}
	if ownGroupRefused(req.ServiceAccount, obj.GetAPIVersion()) {
		return Result{}, validation.AsControllerError(req.ActionID, string(op), obj.GetKind(), objectName(obj.GetNamespace(), obj.GetName()))
	}
	t, err := r.target(ctx, calls, "resource.manifest", req.ServiceAccount, obj, req.Execution.Namespace)
	if err != nil {
		return Result{}, err
	}

	var res Result
	switch op {
	case drv1.OperationCreate:
		err = r.create(ctx, calls, t, req.Execution, &res)
	case drv1.OperationApply:
		err = r.apply(ctx, calls, t, &res)
	case drv1.OperationPatch:
		err = r.patch(ctx, calls, t, &res)
	case drv1.OperationDelete:
		err = r.delete(ctx, calls, t, &res)
	default:
		err = fmt.Errorf("resource.operation: unknown operation %q (want Create, Apply, Patch or Delete)", op)
	}
	return res, err
}

// DeleteCreated deletes the object ref names if it is still that very object (same UID): Revert
// uses it to undo a Create. An object that is gone, or whose name now belongs to another object,
// counts as already gone, and the namesake is left alone. Its API calls retry transient errors
// for the factory's APIRetryTimeout, as Run's do.
func (r *ResourceRunner) DeleteCreated(ctx context.Context, serviceAccount string, ref drv1.ResourceReference) (Result, error) {
	calls := r.clients.apiCalls(r.clients.APIRetryTimeout())
	res, err := r.deleteCreated(ctx, calls, serviceAccount, ref)
	return calls.report(res, err)
}

// DeleteIfMadeBy undoes a Create that may have made its object before its run stopped without
// recording it: the object ref names (in owner's namespace when ref has none) is deleted, that
// very object, only if it carries owner's execution and plan labels. Not found, or not labelled
// so, there is nothing to undo.
func (r *ResourceRunner) DeleteIfMadeBy(ctx context.Context, serviceAccount string, ref drv1.ResourceReference, owner ExecutionRef) (Result, error) {
	calls := r.clients.apiCalls(r.clients.APIRetryTimeout())
	res, err := r.deleteIfMadeBy(ctx, calls, serviceAccount, ref, owner)
	return calls.report(res, err)
}

func (r *ResourceRunner) deleteIfMadeBy(ctx context.Context, calls *apiCalls, serviceAccount string, ref drv1.ResourceReference, owner ExecutionRef) (Result, error) {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(ref.APIVersion)
	obj.SetKind(ref.Kind)
	obj.SetName(ref.Name)
	obj.SetNamespace(ref.Namespace)
	t, err := r.target(ctx, calls, "resourceRef", serviceAccount, obj, owner.Namespace)
	if err != nil {
		return Result{}, err
	}
	cur, err := callAPI(ctx, calls, false, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return t.client.Get(ctx, ref.Name, metav1.GetOptions{})
	})
	switch {
	case apierrors.IsNotFound(err):
		return Result{ResourceRef: t.ref(nil), Message: t.desc + " not found: the interrupted Create did not make it, or it is gone"}, nil
	case err != nil:
		return Result{}, t.fail("get", err)
	}
	labels := cur.GetLabels()
	if !drv1.MadeBy(labels, owner.Name, string(owner.UID), owner.PlanName) {
		return Result{ResourceRef: t.ref(nil), Message: fmt.Sprintf("%s left alone: it was not made by execution %s (%s=%q)", t.desc, owner.Name, drv1.LabelExecution, labels[drv1.LabelExecution])}, nil
	}
	made := *t.ref(cur)
	return r.deleteCreated(ctx, calls, serviceAccount, made)
}

func (r *ResourceRunner) deleteCreated(ctx context.Context, calls *apiCalls, serviceAccount string, ref drv1.ResourceReference) (Result, error) {
	if ref.UID == "" {
		return Result{}, fmt.Errorf("delete %s %s: the reference has no UID, so a namesake cannot be told apart; refusing to delete", ref.Kind, objectName(ref.Namespace, ref.Name))
	}
	if ownGroupRefused(serviceAccount, ref.APIVersion) {
		return Result{}, validation.AsControllerError("revert", "Delete", ref.Kind, objectName(ref.Namespace, ref.Name))
	}
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(ref.APIVersion)
	obj.SetKind(ref.Kind)
	obj.SetName(ref.Name)
	obj.SetNamespace(ref.Namespace)
	t, err := r.target(ctx, calls, "resourceRef", serviceAccount, obj, "")
	if err != nil {
		return Result{}, err
	}
	res := Result{ResourceRef: t.ref(nil)}
	uid := types.UID(ref.UID)
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &background}
	_, err = callAPI(ctx, calls, false, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.client.Delete(ctx, ref.Name, opts)
	})
	switch {
	case err == nil:
		res.Message = t.desc + " deleted"
		res.ResourceRef.UID = ref.UID
		return res, nil
	case apierrors.IsNotFound(err):
		res.Message = t.desc + " already gone"
		return res, nil
	case !apierrors.IsConflict(err):
		return res, t.fail("delete", err)
	}
	// A UID precondition that fails is reported as a conflict: check that the name really
	// belongs to another object now before leaving it alone.
	cur, getErr := callAPI(ctx, calls, false, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return t.client.Get(ctx, ref.Name, metav1.GetOptions{})
	})
	switch {
	case apierrors.IsNotFound(getErr):
		res.Message = t.desc + " already gone"
		return res, nil
	case getErr != nil:
		return res, t.fail("delete", fmt.Errorf("%w (and reading it back to compare UIDs failed: %v)", err, getErr))
	case cur.GetUID() != uid:
		res.Message = fmt.Sprintf("%s already gone (the name now belongs to another object, uid %s, left alone)", t.desc, cur.GetUID())
		return res, nil
	}
	return res, t.fail("delete", err)
}

// target maps obj's kind to its resource, settles its namespace (defaultNamespace for a
// namespaced object without one) and picks the client of the identity. Errors start with field,
// where obj came from.
func (r *ResourceRunner) target(ctx context.Context, calls *apiCalls, field, serviceAccount string, obj *unstructured.Unstructured, defaultNamespace string) (*resourceTarget, error) {
	client, mapper, err := r.clients.Clients(serviceAccount)
	if err != nil {
		return nil, err
	}
	gvk := obj.GroupVersionKind()
	mapping, err := callAPI(ctx, calls, false, func(context.Context) (*meta.RESTMapping, error) {
		return mapper.RESTMapping(gvk.GroupKind(), gvk.Version) // discovery, when not cached yet
	})
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("%s: the API server serves no kind %s in %s (is its CRD installed?): %w", field, gvk.Kind, obj.GetAPIVersion(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: look up the resource of %s %s: %w", field, gvk.Kind, obj.GetAPIVersion(), err)
	}
	t := &resourceTarget{obj: obj}
	if serviceAccount != "" {
		t.as = " as " + actingAs(serviceAccount)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			if defaultNamespace == "" {
				return nil, fmt.Errorf("%s: %s %s is namespaced: set metadata.namespace", field, gvk.Kind, obj.GetName())
			}
			obj.SetNamespace(defaultNamespace)
		}
		t.client = client.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	} else {
		if ns := obj.GetNamespace(); ns != "" {
			return nil, fmt.Errorf("%s: %s %s is cluster-scoped: remove metadata.namespace %q", field, gvk.Kind, obj.GetName(), ns)
		}
		t.client = client.Resource(mapping.Resource)
	}
	t.desc = gvk.Kind + " " + objectName(obj.GetNamespace(), obj.GetName())
	return t, nil
}

// create creates the object. If it exists already and carries this execution's label, an
// earlier attempt of this action made it (the result was lost to a crash or a timeout), and that
// is success; anyone else's object is never taken over.
func (r *ResourceRunner) create(ctx context.Context, calls *apiCalls, t *resourceTarget, exec ExecutionRef, res *Result) error {
	// Two passes: an object found to exist may be deleted before it is read.
	for range 2 {
		created, err := callAPI(ctx, calls, false, func(ctx context.Context) (*unstructured.Unstructured, error) {
			return t.client.Create(ctx, t.obj, metav1.CreateOptions{FieldManager: FieldManager})
		})
		if err == nil {
			res.Message = t.desc + " created"
			res.ResourceRef = t.ref(created)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return t.fail("create", err)
		}
		existing, err := callAPI(ctx, calls, false, func(ctx context.Context) (*unstructured.Unstructured, error) {
			return t.client.Get(ctx, t.obj.GetName(), metav1.GetOptions{})
		})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return t.fail("create", fmt.Errorf("it already exists and reading it failed: %w", err))
		}
		labels := existing.GetLabels()
		if !drv1.MadeBy(labels, exec.Name, string(exec.UID), exec.PlanName) {
			return fmt.Errorf("%s already exists and was not created by this execution (%s=%q): delete or rename it, or use Apply to take it over",
				t.desc, drv1.LabelExecution, labels[drv1.LabelExecution])
		}
		res.Message = t.desc + " created (by an earlier attempt of this action)"
		res.ResourceRef = t.ref(existing)
		return nil
	}
	return fmt.Errorf("create %s%s: it was deleted while being created; try again", t.desc, t.as)
}

// apply server-side applies the manifest. Force is set because the runbook is the authority
// over the fields it names during a failover: a field another manager owns (kubectl, a GitOps
// tool) is taken over instead of failing the action on a conflict. Fields the manifest leaves
// out keep their owners and values.
func (r *ResourceRunner) apply(ctx context.Context, calls *apiCalls, t *resourceTarget, res *Result) error {
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	applied, err := callAPI(ctx, calls, true, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return t.client.Apply(ctx, t.obj.GetName(), t.obj, opts)
	})
	if err != nil {
		return t.fail("apply", err)
	}
	res.Message = t.desc + " applied"
	res.ResourceRef = t.ref(applied)
	return nil
}

// patch merge-patches (RFC 7386) the existing object with the manifest minus its identity
// (apiVersion, kind, metadata.name, namespace and generateName); labels and annotations given in
// the manifest are merged too.
func (r *ResourceRunner) patch(ctx context.Context, calls *apiCalls, t *resourceTarget, res *Result) error {
	body := t.obj.DeepCopy().Object
	delete(body, "apiVersion")
	delete(body, "kind")
	if md, ok := body["metadata"].(map[string]any); ok {
		delete(md, "name")
		delete(md, "namespace")
		delete(md, "generateName")
		if len(md) == 0 {
			delete(body, "metadata")
		}
	}
	data, err := utiljson.Marshal(body)
	if err != nil {
		return fmt.Errorf("resource.manifest: encode the patch of %s: %w", t.desc, err)
	}
	patched, err := callAPI(ctx, calls, true, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return t.client.Patch(ctx, t.obj.GetName(), types.MergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager})
	})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("patch %s%s: %w: Patch changes an existing object, which must exist (use Create or Apply to make it)", t.desc, t.as, err)
	}
	if err != nil {
		return t.fail("patch", err)
	}
	res.Message = t.desc + " patched"
	res.ResourceRef = t.ref(patched)
	return nil
}

// delete deletes the object by name, with background propagation: dependents are collected by
// the garbage collector afterwards (Foreground would wait for it, and hang where none runs). An
// object already gone is success. The object is read first only to report its UID.
func (r *ResourceRunner) delete(ctx context.Context, calls *apiCalls, t *resourceTarget, res *Result) error {
	res.ResourceRef = t.ref(nil)
	cur, err := callAPI(ctx, calls, false, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return t.client.Get(ctx, t.obj.GetName(), metav1.GetOptions{})
	})
	switch {
	case apierrors.IsNotFound(err):
		res.Message = t.desc + " already gone"
		return nil
	case apierrors.IsForbidden(err):
		// Allowed to delete but not to read: delete all the same, without reporting a UID.
	case err != nil:
		return t.fail("delete", err)
	}
	background := metav1.DeletePropagationBackground
	_, err = callAPI(ctx, calls, false, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.client.Delete(ctx, t.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
	})
	switch {
	case apierrors.IsNotFound(err):
		res.Message = t.desc + " already gone"
		return nil
	case err != nil:
		return t.fail("delete", err)
	}
	res.Message = t.desc + " deleted"
	if cur != nil {
		res.ResourceRef.UID = string(cur.GetUID())
	}
	return nil
}

// maxGenerateNamePrefix is how much of a generateName the API server keeps (63 - 5 random
// characters); DeterministicName truncates the same way.
const maxGenerateNamePrefix = 58

// nameAlphabet is the API server's own alphabet for generated names: no vowels, so no words,
// and no characters that are easily confused (0/o, 1/l, 3/e).
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// DeterministicName stands in for metadata.generateName: prefix plus 5 lowercase alphanumerics
// derived from the execution's UID and the action's ID. A retry of the action, or a run after a
// controller restart, gets the same name, so it finds the object made before instead of making a
// second one; another execution or action gets another name.
func DeterministicName(prefix string, execution types.UID, actionID string) string {
	if len(prefix) > maxGenerateNamePrefix {
		prefix = prefix[:maxGenerateNamePrefix]
	}
	sum := sha256.Sum256([]byte(string(execution) + "\x00" + actionID))
	n := binary.BigEndian.Uint64(sum[:8])
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = nameAlphabet[n%uint64(len(nameAlphabet))]
		n /= uint64(len(nameAlphabet))
	}
	return prefix + string(suffix)
}

// objectName is "namespace/name", or "name" for a cluster-scoped object.
func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
