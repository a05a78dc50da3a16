package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Path is where the validating webhook serves AdmissionReview requests for all three kinds.
const Path = "/validate"

// MaxReviewBytes bounds a request body: the API server's own request limit (3 MiB) plus room for
// the old object of an update and the review's envelope. A larger body is refused (413) before it
// is decoded.
const MaxReviewBytes = 7 << 20

// Webhook is the validating admission webhook: an http.Handler for AdmissionReview v1.
type Webhook struct {
	Decider *Decider
	// Controller is the controller's own user name, as the API server authenticates it: the only
	// user who may write a status, or records of another user than itself.
	Controller string
	// ControllerUID is its UID, when the process learned one: then a request is the controller's
	// only with both.
	ControllerUID string
	// Ready reports whether the caches the decisions read have synced; until then every request
	// is refused as unavailable (the API server's failurePolicy Fail turns that into a retryable
	// error), never decided on an empty cache.
	Ready func() bool
	// Observe, when set, is told of every decision on one of our kinds (metrics).
	Observe func(kind string, allowed bool, took time.Duration)
	// State, when set, gives each request a State of its own (instead of the Decider's): one
	// that reads the API server where its cache has nothing, and reports a read that failed for
	// another reason than NotFound through ReadError, so that the request is answered "retry"
	// instead of decided on a guess.
	State func(ctx context.Context) State
}

// ReadError is implemented by a State whose reads can fail.
type ReadError interface {
	ReadError() error
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	serveReview(rw, req, w.Review, w.Observe)
}

// serveReview answers one POSTed AdmissionReview with review's response; observe, when set, is
// told of every decision on one of our kinds (metrics).
func serveReview(rw http.ResponseWriter, req *http.Request, review func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse,
	observe func(kind string, allowed bool, took time.Duration)) {
	if req.Method != http.MethodPost {
		http.Error(rw, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxReviewBytes+1))
	if err != nil {
		http.Error(rw, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > MaxReviewBytes {
		http.Error(rw, fmt.Sprintf("the AdmissionReview is too large: over %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		http.Error(rw, fmt.Sprintf("not an AdmissionReview v1 with a request: %v", err), http.StatusBadRequest)
		return
	}
	start := time.Now()
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: review(req.Context(), in.Request),
	}
	switch k := in.Request.Kind; {
	case observe == nil || k.Group != drv1.GroupName:
	case k.Kind == "DRWorkflow" || k.Kind == "DRPlan" || k.Kind == "DRPlanExecution": // only ours: labels stay bounded
		observe(k.Kind, out.Response.Allowed, time.Since(start))
	}
	rw.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(rw).Encode(out); err != nil {
		klog.FromContext(req.Context()).Error(err, "Writing the admission response")
	}
}

// Review decides one request.
func (w *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group == drv1.GroupName && req.Kind.Kind == "DRPlanExecution" && req.Operation == admissionv1.Delete && req.SubResource == "" {
		return w.reviewDelete(ctx, req, resp)
	}
	if req.Kind.Group != drv1.GroupName || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return resp // not ours to judge
	}
	// Who may do what needs no cache: decided first, also while the caches sync.
	if req.SubResource != "" {
		if st := statusWrite(req, w.Controller, w.ControllerUID); st != nil {
			return refuse(resp, *st)
		}
		return resp
	}
	if st := records(req, w.Controller, w.ControllerUID); st != nil {
		return refuse(resp, *st)
	}
	if st := w.starting(); st != nil {
		return refuse(resp, *st)
	}
	decider := w.decider(ctx, req)
	var d Decision
	var err error
	switch req.Kind.Kind {
	case "DRWorkflow":
		var wf drv1.DRWorkflow
		if err = decode(req.Object.Raw, &wf); err == nil {
			d = decider.Workflow(&wf)
		}
	case "DRPlan":
		var plan, old drv1.DRPlan
		if err = decodeBoth(req, &plan, &old); err == nil {
			d = decider.Plan(ctx, &plan, orNil(req, &old))
		}
	case "DRPlanExecution":
		var exec, old drv1.DRPlanExecution
		if err = decodeBoth(req, &exec, &old); err == nil {
			d = decider.Execution(ctx, &exec, orNil(req, &old))
		}
	default:
		return resp
	}
	if err != nil {
		return refuse(resp, decodeError(req, err))
	}
	return answer(resp, decider, d)
}

// starting is the refusal of a request that needs the caches while they have not synced yet.
func (w *Webhook) starting() *metav1.Status {
	if w.Ready == nil || w.Ready() {
		return nil
	}
	return &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable,
		Reason: metav1.StatusReasonServiceUnavailable, Message: "the drplan-controller webhook is starting (its caches are not synced yet): retry in a few seconds"}
}

// decider is the request's own Decider: who asks, and what it reads.
func (w *Webhook) decider(ctx context.Context, req *admissionv1.AdmissionRequest) *Decider {
	per := *w.Decider
	per.User = requesterOf(req.UserInfo)
	if w.State != nil {
		per.State = w.State(ctx)
	}
	return &per
}

// answer is resp with decider's decision d: "retry" when what it read could not be read.
func answer(resp *admissionv1.AdmissionResponse, decider *Decider, d Decision) *admissionv1.AdmissionResponse {
	if re, ok := decider.State.(ReadError); ok && re.ReadError() != nil {
		return refuse(resp, metav1.Status{Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable,
			Reason: metav1.StatusReasonServiceUnavailable, Message: "the drplan-controller webhook could not read what it decides on: " + re.ReadError().Error() + "; retry"})
	}
	resp.Warnings = d.Warnings
	if d.Err != nil {
		return refuse(resp, d.Err.ErrStatus)
	}
	return resp
}

func refuse(resp *admissionv1.AdmissionResponse, st metav1.Status) *admissionv1.AdmissionResponse {
	resp.Allowed, resp.Result = false, &st
	return resp
}

func decode(raw []byte, into any) error {
	if len(raw) == 0 {
		return fmt.Errorf("the request carries no object")
	}
	return json.Unmarshal(raw, into)
}

// decodeBoth decodes the object and, on an update, the old object.
func decodeBoth(req *admissionv1.AdmissionRequest, obj, old any) error {
	if err := decode(req.Object.Raw, obj); err != nil {
		return err
	}
	if req.Operation == admissionv1.Update {
		if err := decode(req.OldObject.Raw, old); err != nil {
			return fmt.Errorf("old object: %w", err)
		}
	}
	return nil
}

// orNil is old on an update, nil on a create.
func orNil[T any](req *admissionv1.AdmissionRequest, old *T) *T {
	if req.Operation == admissionv1.Update {
		return old
	}
	return nil
}
