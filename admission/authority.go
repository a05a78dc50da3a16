package admission

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Who may do what, judged on what the API server authenticated (the request's userInfo), never
// on a field a user wrote: the records of who asked (AnnotationRequester, AnnotationDecisions)
// and the status subresources. Nothing here reads a cache.

// requesterOf is the record of the user making the request.
func requesterOf(u authenticationv1.UserInfo) drv1.Requester {
	r := drv1.Requester{Username: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		r.Extra = make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			r.Extra[k] = v
		}
	}
	return r
}

// metadataOf is the part of an object the records live in; the rest (a status may be large) is
// skipped.
type metadataOf struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// displayName is the name a refusal gives the object: its name, or its generateName while the API
// server has not made one yet.
func (m *metadataOf) displayName() string {
	if m.Metadata.Name != "" {
		return m.Metadata.Name
	}
	return m.Metadata.GenerateName
}

// decodeError is the refusal of a request whose object does not decode, naming the object as far
// as it can be told.
func decodeError(req *admissionv1.AdmissionRequest, err error) metav1.Status {
	name := req.Name
	if name == "" {
		var m metadataOf
		if json.Unmarshal(req.Object.Raw, &m) == nil {
			name = m.displayName()
		}
	}
	what := req.Kind.Kind
	if name != "" {
		what += " " + strconv.Quote(name)
		if req.Namespace != "" {
			what += " in namespace " + req.Namespace
		}
	}
	return metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
		Message: fmt.Sprintf("decoding the %s: %v", what, err)}
}

// requestMetadata decodes the name and annotations of the request's object and, on an update,
// of the old object (nil on a create).
func requestMetadata(req *admissionv1.AdmissionRequest) (name string, obj, old map[string]string, err error) {
	var o, p metadataOf
	if err := decodeBoth(req, &o, &p); err != nil {
		return "", nil, nil, err
	}
	return o.displayName(), o.Metadata.Annotations, p.Metadata.Annotations, nil
}

// isControllerUser reports whether u is the controller's own user: its name and, when the process
// learned one (SelfSubjectReview), its UID, so that impersonating the name alone (without
// Impersonate-Uid) is not the controller. Without a UID (a server without SelfSubjectReview, or a
// user the API server gives none), the name decides.
func isControllerUser(u authenticationv1.UserInfo, name, uid string) bool {
	return name != "" && u.Username == name && (uid == "" || u.UID == uid)
}

var annotationsPath = field.NewPath("metadata", "annotations")

// statusWrite admits a write of a status subresource only from the controller itself: status is
// what the controller observed and did, and the next run decides from it.
func statusWrite(req *admissionv1.AdmissionRequest, controller, controllerUID string) *metav1.Status {
	if req.SubResource != "status" || isControllerUser(req.UserInfo, controller, controllerUID) {
		return nil
	}
	st := apierrors.NewForbidden(schema.GroupResource{Group: drv1.GroupName, Resource: req.Resource.Resource}, req.Name,
		fmt.Errorf("its status is written only by the drplan-controller (%s), not by %q", controller, req.UserInfo.Username)).ErrStatus
	return &st
}

// records refuses a DRPlanExecution or DRPlan whose records of who asked are not the ones the
// mutating webhook writes for this request's user (the second line, should the mutating webhook
// not have been called, and the guard of the controller's own records).
func records(req *admissionv1.AdmissionRequest, controller, controllerUID string) *metav1.Status {
	if req.Kind.Kind != "DRPlanExecution" && req.Kind.Kind != "DRPlan" {
		return nil
	}
	name, obj, old, err := requestMetadata(req)
	if err != nil {
		st := decodeError(req, err)
		return &st
	}
	user := requesterOf(req.UserInfo)
	isController := isControllerUser(req.UserInfo, controller, controllerUID)
	var errs field.ErrorList
	if req.Kind.Kind == "DRPlan" {
		errs = planRecords(obj, old, user, isController)
	} else {
		errs = executionRecords(req.Operation == admissionv1.Create, obj, old, user, isController)
	}
	if len(errs) == 0 {
		return nil
	}
	return &invalid(req.Kind.Kind, name, errs).ErrStatus
}

// executionRecords: a new execution records the user creating it as its requester (the
// controller creates one for the requester of a plan trigger), which never changes; its
// decisions list only grows, by one entry of this request's user for each recorded annotation
// the request sets or changes.
func executionRecords(create bool, obj, old map[string]string, user drv1.Requester, isController bool) field.ErrorList {
	var errs field.ErrorList
	if create {
		errs = requesterIs(annotationsPath.Key(drv1.AnnotationRequester), obj[drv1.AnnotationRequester], user, isController)
	} else {
		errs = requesterKept(obj, old)
	}
	errs = append(errs, executionAnnotations(obj, old, isController)...)
	return append(errs, decisionsAppended(obj, old, user, isController)...)
}

// requesterKept refuses an update of an execution that changes or removes its requester.
func requesterKept(obj, old map[string]string) field.ErrorList {
	if obj[drv1.AnnotationRequester] == old[drv1.AnnotationRequester] {
		return nil
	}
	return field.ErrorList{field.Forbidden(annotationsPath.Key(drv1.AnnotationRequester), "the requester is recorded when the execution is created, and never changes")}
}

// executionAnnotations refuses, on an execution, a dr.bkbcs.tencent.com/ annotation set or
// changed that is neither a decision (drv1.DecisionAnnotations) nor a record; the controller's
// own (drv1.AnnotationTriggerToken) set, changed or removed by anyone but the controller; and a
// decision's value over drv1.MaxDecisionValueBytes. old is nil on a create.
func executionAnnotations(obj, old map[string]string, isController bool) field.ErrorList {
	var errs field.ErrorList
	keys := slices.Sorted(maps.Keys(obj))
	if _, ok := obj[drv1.AnnotationTriggerToken]; !ok {
		if _, was := old[drv1.AnnotationTriggerToken]; was {
			keys = append(keys, drv1.AnnotationTriggerToken)
		}
	}
	for _, k := range keys {
		v, set := obj[k]
		if was, ok := old[k]; !drv1.OwnAnnotation(k) || ok == set && was == v {
			continue
		}
		path := annotationsPath.Key(k)
		switch {
		case drv1.RecordedAnnotation(k):
			if len(v) > drv1.MaxDecisionValueBytes {
				errs = append(errs, field.TooLong(path, "", drv1.MaxDecisionValueBytes))
			}
		case k == drv1.AnnotationRequester || k == drv1.AnnotationDecisions:
			// the records: checked as such
		case k == drv1.AnnotationTriggerToken:
			if !isController {
				errs = append(errs, field.Forbidden(path, "written only by the drplan-controller, on the execution it creates for a plan trigger"))
			}
		case !isController:
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("not an annotation of executions: of %s/ annotations, a user sets only %s",
				drv1.GroupName, strings.Join(drv1.DecisionAnnotations, ", "))))
		}
	}
	return errs
}

// requesterIs checks a requester record: present, as the webhook writes it, and the user's
// (anyone's, for the controller copying a trigger's requester).
func requesterIs(path *field.Path, value string, user drv1.Requester, anyone bool) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(path, drv1.NoRequesterMessage)}
	}
	r, err := drv1.ParseRequester(value)
	switch {
	case err != nil:
		return field.ErrorList{field.Forbidden(path, err.Error())}
	case r.Encode() != value:
		return field.ErrorList{field.Forbidden(path, "not a requester record as the admission webhook writes it")}
	case !anyone && !r.Equal(user):
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf("records %q, not the user making this request (%q, as the API server authenticated them)",
			r.Username, user.Username))}
	}
	return nil
}

// decisionsAppended checks that the decisions list is the old one with one entry appended for
// each recorded annotation the request sets or changes, naming its value and this request's user.
// The controller may append entries of another user (a plan trigger's requester), and change
// recorded annotations without an entry (its own bookkeeping, which it does not act on).
func decisionsAppended(obj, old map[string]string, user drv1.Requester, isController bool) field.ErrorList {
	path := annotationsPath.Key(drv1.AnnotationDecisions)
	before, after := old[drv1.AnnotationDecisions], obj[drv1.AnnotationDecisions]
	changed := drv1.ChangedAnnotations(old, obj)
	if before == after && len(changed) == 0 {
		return nil
	}
	earlier, err := drv1.ParseDecisions(before)
	if err != nil {
		return field.ErrorList{field.Forbidden(path, "the recorded list is unreadable, so nothing more can be recorded: "+err.Error())}
	}
	list, err := drv1.ParseDecisions(after)
	switch {
	case err != nil:
		return field.ErrorList{field.Forbidden(path, err.Error())}
	case after != "" && drv1.EncodeDecisions(list) != after:
		return field.ErrorList{field.Forbidden(path, "not a decisions list as the admission webhook writes it")}
	case len(list) < len(earlier) || drv1.EncodeDecisions(list[:len(earlier)]) != drv1.EncodeDecisions(earlier):
		return field.ErrorList{field.Forbidden(path, "append-only: the entries recorded cannot be changed or removed")}
	}
	if full := drv1.DecisionsFit(list, len(earlier)); full != "" && len(list) > len(earlier) {
		return field.ErrorList{field.Forbidden(path, full)}
	}
	unrecorded := map[string]bool{}
	for _, k := range changed {
		unrecorded[k] = true
	}
	var errs field.ErrorList
	for i, d := range list[len(earlier):] {
		n := len(earlier) + i
		switch {
		case !unrecorded[d.Annotation] || obj[d.Annotation] != d.Value:
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("entry %d records %s=%q, which this request does not set", n, d.Annotation, d.Value)))
		case !isController && !d.User.Equal(user):
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("entry %d records user %q, not the user making this request (%q)", n, d.User.Username, user.Username)))
		}
		delete(unrecorded, d.Annotation)
	}
	for _, k := range changed {
		if unrecorded[k] && !isController {
			errs = append(errs, field.Required(path, fmt.Sprintf("no decision recorded for %s: the admission webhook was not called", k)))
		}
	}
	return errs
}

// planRecords: a new trigger carries the requester record of the user setting it; the record
// changes only with a new trigger, or goes when the controller clears the trigger; the pending
// marker and its requester are the controller's alone.
func planRecords(obj, old map[string]string, user drv1.Requester, isController bool) field.ErrorList {
	var errs field.ErrorList
	path := annotationsPath.Key(drv1.AnnotationRequester)
	trigger, requester := obj[drv1.AnnotationTrigger], obj[drv1.AnnotationRequester]
	switch {
	case trigger != "" && trigger != old[drv1.AnnotationTrigger]:
		errs = requesterIs(path, requester, user, false)
	case requester != old[drv1.AnnotationRequester] && !(isController && requester == ""):
		errs = field.ErrorList{field.Forbidden(path, "recorded by the admission webhook for the user who sets "+drv1.AnnotationTrigger+"; it cannot be set or changed otherwise")}
	}
	return append(errs, planMarkers(obj, old, isController)...)
}

// planMarkers refuses a change of the pending marker or its requester by anyone but the
// controller.
func planMarkers(obj, old map[string]string, isController bool) field.ErrorList {
	var errs field.ErrorList
	for _, k := range []string{drv1.AnnotationTriggerPending, drv1.AnnotationTriggerPendingRequester} {
		if obj[k] != old[k] && !isController {
			errs = append(errs, field.Forbidden(annotationsPath.Key(k), "written only by the drplan-controller, while it turns a trigger into an execution"))
		}
	}
	return errs
}
