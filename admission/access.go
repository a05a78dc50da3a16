package admission

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/lru"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// The rights checks of admission (docs/security.md): the same questions the controller asks at
// start, answered before anything is stored. Values read from Secrets are not read here: the
// Secret's get is checked, and what the value shapes is checked again at start.

// forbidden is the refusal of kind name for err, an access refusal, or a 503 when a review could
// not be made.
func forbidden(kind, name string, err error) *apierrors.StatusError {
	if !access.IsRefused(err) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable,
			Reason: metav1.StatusReasonServiceUnavailable, Message: "the drplan-controller webhook could not check rights: " + err.Error() + "; retry"}}
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: drv1.GroupName, Resource: strings.ToLower(kind) + "s"}, name, err)
}

// planRights refuses user the plan's own rights, as kind name: impersonating the ServiceAccount it
// names, reading the workflows of other namespaces it references (or at all, where that is
// refused). Its author needs them to write its spec, its requesters to run it; they are checked
// before anything else is said of a run, so that a requester who may not read a workflow is told
// so, and nothing of it.
func (d *Decider) planRights(ctx context.Context, user drv1.Requester, plan *drv1.DRPlan, kind, name string) *apierrors.StatusError {
	if d.Access == nil {
		return nil
	}
	needs, err := d.Access.PlanNeeds(plan.Namespace, plan.Name, &plan.Spec)
	if err == nil {
		err = d.Access.Reviewer.Check(ctx, user, needs)
	}
	if err != nil {
		return forbidden(kind, name, err)
	}
	return nil
}

// requester is who a run of exec is checked for: the request's user or, for the execution the
// controller creates for a plan trigger, the trigger's.
func (d *Decider) requester(exec *drv1.DRPlanExecution) drv1.Requester {
	if rec, ok := drv1.RequesterOf(exec.Annotations); ok {
		return rec
	}
	return d.User
}

// runRights refuses a run of plan (exec: the execution, or a stand-in for a trigger) that its
// requester may not make: the plan's own needs, the Secrets its parameters read and, for a
// requester-checked plan, every right of every rendered action; never the controller's own
// objects. target is a Revert's target (nil for an Execute). A run that does not prepare is left
// to the controller, which fails it with the reason.
func (d *Decider) runRights(ctx context.Context, plan *drv1.DRPlan, exec, target *drv1.DRPlanExecution, kind, name string) *apierrors.StatusError {
	if d.Access == nil {
		return nil
	}
	user := d.requester(exec)
	spec := &plan.Spec
	var data *runplan.Snapshot
	var err error
	if target != nil {
		data, err = runplan.ReadSnapshot(target.Status.Snapshot)
		if err == nil {
			spec = &data.Plan
		}
	} else {
		data, err = runplan.SnapshotData(plan, d.State)
	}
	trigger := exec.Name == "" && kind == "DRPlan" || exec.Annotations[drv1.AnnotationTriggerToken] != ""
	key, known := d.admittedKey(user, plan, exec, target, data, trigger)
	if known && d.Access.Found(key) {
		return nil
	}
	needs, perr := d.Access.PlanNeeds(plan.Namespace, plan.Name, spec)
	if perr != nil {
		return forbidden(kind, name, perr)
	}
	if trigger {
		needs = append(needs, access.TriggerNeed(plan.Namespace, plan.Name)) // a trigger, or its execution
	}
	// The plan's own rights first: a requester who may not read a workflow of another namespace
	// learns nothing of its actions (a Revert renders them from the target's snapshot) from a
	// later refusal. A yes is kept: Run asks none of them again.
	if err := d.Access.Reviewer.Check(ctx, user, needs); err != nil {
		return forbidden(kind, name, err)
	}
	read := func(secret, _ string) (string, error) {
		if access.RequesterCheckedPlan(spec) { // else its ServiceAccount reads it, whom the requester may impersonate
			needs = append(needs, access.SecretNeed(plan.Namespace, secret))
		}
		return "", rules.ErrNotRead
	}
	var prep *runplan.Prepared
	if err == nil {
		if target != nil {
			chain := []*drv1.DRPlanExecution{target}
			if execs, lerr := d.State.ExecutionsForPlan(plan.Namespace, plan.Name); lerr == nil {
				chain = rules.Chain(target, execs)
			}
			prep, err = runplan.Revert(exec.Name, chain, data, read, d.Rules, exec.Spec.FailurePolicy)
		} else {
			prep, err = runplan.Prepare(exec, data, read, time.Now(), d.Rules)
		}
	}
	if err != nil {
		err = d.Access.Reviewer.Check(ctx, user, needs)
	} else {
		err = d.Access.Run(ctx, user, plan.Namespace, spec, prep, needs)
	}
	if err != nil {
		return forbidden(kind, name, err)
	}
	if known && prep != nil {
		d.Access.Remember(key)
	}
	return nil
}

// A run whose rights were all found is remembered (access.Authorizer.Remember) under a key of
// what it renders from: another execution of the same plan and workflows (the same
// resourceVersions), with the same spec, for the same user, renders to the same rights, unless
// its templates read the execution's name (then the name is part of the key) or the time (then it
// is not remembered). Many executions of one plan at once (a drill) are checked once.

// templateReads says which of the execution's own values a workflow's templates read, by the
// workflow's UID and resourceVersion.
var templateReads = lru.New[string, [2]bool](4096)

// admittedKey is the key under which a run is remembered, and whether it has one.
func (d *Decider) admittedKey(user drv1.Requester, plan *drv1.DRPlan, exec, target *drv1.DRPlanExecution, data *runplan.Snapshot, trigger bool) ([sha256.Size]byte, bool) {
	if data == nil || plan.UID == "" {
		return [sha256.Size]byte{}, false
	}
	h := sha256.New()
	spec, err := json.Marshal(exec.Spec)
	if err != nil {
		return [sha256.Size]byte{}, false
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%v\x00%s\x00", user.Encode(), plan.UID, plan.ResourceVersion, exec.Namespace, trigger, spec)
	if target != nil {
		fmt.Fprintf(h, "%s\x00%s\x00", target.UID, target.ResourceVersion)
	}
	readsName := false
	for _, k := range slices.Sorted(maps.Keys(data.Workflows)) {
		ns, name, _ := strings.Cut(k, "/")
		wf, ok := d.State.GetWorkflow(ns, name)
		if !ok {
			return [sha256.Size]byte{}, false
		}
		id := string(wf.UID) + "/" + wf.ResourceVersion
		reads, ok := templateReads.Get(id)
		if !ok {
			raw, err := json.Marshal(wf.Spec)
			if err != nil {
				return [sha256.Size]byte{}, false
			}
			reads = [2]bool{bytes.Contains(raw, []byte("executionName")), bytes.Contains(raw, []byte("timestamp"))}
			templateReads.Add(id, reads)
		}
		if reads[1] {
			return [sha256.Size]byte{}, false // the time: not the same rendering twice
		}
		readsName = readsName || reads[0]
		fmt.Fprintf(h, "%s\x00%s\x00", k, id)
	}
	if readsName {
		fmt.Fprintf(h, "%s\x00", exec.Name)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key, true
}

// cancelRights refuses a plan's trigger=cancel from a user who may not update the executions it
// would cancel.
func (d *Decider) cancelRights(ctx context.Context, plan *drv1.DRPlan) *apierrors.StatusError {
	if d.Access == nil {
		return nil
	}
	need := access.CancelNeed(plan.Namespace, plan.Name, "")
	if cur := plan.Status.CurrentExecution; cur != nil {
		need.Name = cur.Name
	}
	if err := d.Access.Reviewer.Check(ctx, d.User, []access.Need{need}); err != nil {
		return forbidden("DRPlan", plan.Name, err)
	}
	return nil
}

// staticRights refuses a workflow whose untemplated manifests name the controller's own
// objects: its namespace stands for the execution's.
func (d *Decider) staticRights(wf *drv1.DRWorkflow) *apierrors.StatusError {
	if d.Access == nil {
		return nil
	}
	for i, a := range wf.Spec.Actions {
		bodies := []drv1.ActionBody{a.ActionBody}
		if a.Rollback != nil {
			bodies = append(bodies, a.Rollback.ActionBody)
		}
		for _, b := range bodies {
			if templated(b) {
				continue // rendered at run time, checked then
			}
			needs, err := access.BodyNeeds(b, d.Access.Mapper, wf.Namespace, "action "+a.Name)
			if err != nil {
				continue // an unknown kind: the run says so
			}
			if err := d.Access.Policy.Protected.Check(needs); err != nil {
				return invalid("DRWorkflow", orGenerated(wf.ObjectMeta), field.ErrorList{field.Forbidden(
					field.NewPath("spec", "actions").Index(i), err.Error())})
			}
		}
	}
	return nil
}

// orGenerated names an object in a refusal: its name, or its generateName while it has none.
func orGenerated(m metav1.ObjectMeta) string {
	if m.Name == "" {
		return m.GenerateName
	}
	return m.Name
}

// templated reports whether any string of the body is a template.
func templated(b drv1.ActionBody) bool {
	raw, err := json.Marshal(b)
	return err != nil || bytes.Contains(raw, []byte("{{"))
}
