package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// MutatePath is where the mutating webhook is served.
const MutatePath = "/mutate"

// Mutator is the mutating admission webhook: it records who asks, as the API server
// authenticated them (docs/admission.md).
//
//   - A DRPlanExecution created gets the requester record of the user creating it, whatever the
//     client sent; the controller's own creates keep the requester of the plan trigger they carry.
//   - A DRPlanExecution update that sets or changes a recorded annotation (dr.bkbcs.tencent.com/
//     cancel, ...) appends one decision per annotation to its decisions list; an edit of the list
//     itself is refused. The controller appends its own entries (a plan trigger's cancel).
//   - A DRPlan create or update that sets dr.bkbcs.tencent.com/trigger gets the requester record
//     of the user setting it, which the controller carries over to the execution it creates.
//
// It reads no cache; the validating webhook checks the result.
type Mutator struct {
	// Controller is the controller's own user name, as the API server authenticates it.
	Controller string
	// ControllerUID is its UID, when the process learned one: then a request is the controller's
	// only with both.
	ControllerUID string
	// Now is the clock of the decisions' times; nil means time.Now.
	Now func() time.Time
}

func (m *Mutator) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	serveReview(rw, req, m.Review, nil)
}

// Review answers one request with the JSON Patch of the records, if any.
func (m *Mutator) Review(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	kind := req.Kind.Kind
	if req.Kind.Group != drv1.GroupName || req.SubResource != "" || (kind != "DRPlanExecution" && kind != "DRPlan") ||
		(req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return resp
	}
	name, obj, old, err := requestMetadata(req)
	if err != nil {
		return refuse(resp, decodeError(req, err))
	}
	var set map[string]string
	var errs field.ErrorList
	if kind == "DRPlan" {
		set, errs = m.plan(req, obj, old)
	} else {
		set, errs = m.execution(req, obj, old)
	}
	if len(errs) > 0 {
		return refuse(resp, invalid(kind, name, errs).ErrStatus)
	}
	if patch := annotationPatch(obj, set); patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}

// plan records the user setting a new trigger as its requester. Like the validating webhook, and
// so also while that one is not called, it refuses a record set or changed otherwise and the
// controller's pending marker written by anyone else.
func (m *Mutator) plan(req *admissionv1.AdmissionRequest, obj, old map[string]string) (map[string]string, field.ErrorList) {
	isController := isControllerUser(req.UserInfo, m.Controller, m.ControllerUID)
	if t := obj[drv1.AnnotationTrigger]; t == "" || t == old[drv1.AnnotationTrigger] {
		return nil, planRecords(obj, old, requesterOf(req.UserInfo), isController)
	}
	if errs := planMarkers(obj, old, isController); len(errs) > 0 {
		return nil, errs
	}
	requester, errs := boundedRequester(req)
	if errs != nil {
		return nil, errs
	}
	return map[string]string{drv1.AnnotationRequester: requester}, nil
}

// boundedRequester is the record of the request's user, refused over drv1.MaxRequesterBytes.
func boundedRequester(req *admissionv1.AdmissionRequest) (string, field.ErrorList) {
	requester := requesterOf(req.UserInfo).Encode()
	if len(requester) > drv1.MaxRequesterBytes {
		return "", field.ErrorList{field.Forbidden(annotationsPath.Key(drv1.AnnotationRequester), fmt.Sprintf(
			"your user's record (name, groups and extra) is %d bytes, over the limit of %d: it cannot be recorded", len(requester), drv1.MaxRequesterBytes))}
	}
	return requester, nil
}

// execution returns the records to set on an execution ("" removes one): on a create the
// requester and a fresh decisions list, on an update the list with this request's decisions
// appended.
func (m *Mutator) execution(req *admissionv1.AdmissionRequest, obj, old map[string]string) (map[string]string, field.ErrorList) {
	user := requesterOf(req.UserInfo)
	if isControllerUser(req.UserInfo, m.Controller, m.ControllerUID) {
		return nil, nil // it writes its own records: a plan trigger's requester and decisions
	}
	listPath := annotationsPath.Key(drv1.AnnotationDecisions)
	if errs := executionAnnotations(obj, old, false); len(errs) > 0 {
		return nil, errs
	}
	set := map[string]string{}
	if req.Operation == admissionv1.Create {
		requester, errs := boundedRequester(req)
		if errs != nil {
			return nil, errs
		}
		set[drv1.AnnotationRequester], set[drv1.AnnotationDecisions] = requester, "" // a client's list is no record
	} else if obj[drv1.AnnotationDecisions] != old[drv1.AnnotationDecisions] {
		return nil, field.ErrorList{field.Forbidden(listPath, "append-only, written by the admission webhook: it cannot be edited")}
	} else if errs := requesterKept(obj, old); len(errs) > 0 {
		return nil, errs // also while the validating webhook is not called
	}
	changed := drv1.ChangedAnnotations(old, obj)
	if len(changed) == 0 {
		return set, nil
	}
	list, err := drv1.ParseDecisions(old[drv1.AnnotationDecisions])
	if err != nil {
		return nil, field.ErrorList{field.Forbidden(listPath, "the recorded list is unreadable, so nothing more can be recorded: "+err.Error())}
	}
	now := metav1.NewTime(m.now().UTC().Truncate(time.Second))
	earlier := len(list)
	for _, k := range changed {
		list = append(list, drv1.Decision{User: user, Annotation: k, Value: obj[k], Time: now})
	}
	if full := drv1.DecisionsFit(list, earlier); full != "" {
		return nil, field.ErrorList{field.Forbidden(listPath, full)}
	}
	set[drv1.AnnotationDecisions] = drv1.EncodeDecisions(list)
	return set, nil
}

func (m *Mutator) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// jsonPatchOp is one operation of an RFC 6902 JSON Patch.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// annotationPatch is the JSON Patch setting the annotations of set on an object whose
// annotations are obj ("" removes one; nil obj: the object has none, so the whole map is
// added). Keys are escaped as RFC 6901 requires ("/" is "~1"). Nil when nothing changes.
func annotationPatch(obj, set map[string]string) []byte {
	var ops []jsonPatchOp
	if obj == nil {
		add := map[string]string{}
		for k, v := range set {
			if v != "" {
				add[k] = v
			}
		}
		if len(add) > 0 {
			ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/annotations", Value: add})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		cur, present := obj[k]
		path := "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
		switch v := set[k]; {
		case obj == nil || (present && cur == v):
		case v == "" && present:
			ops = append(ops, jsonPatchOp{Op: "remove", Path: path})
		case v != "":
			ops = append(ops, jsonPatchOp{Op: "add", Path: path, Value: v})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	patch, _ := json.Marshal(ops) // strings and maps of strings always marshal
	return patch
}
