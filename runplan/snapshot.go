package runplan

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// The bounds of a snapshot, checked where a plan is validated and again when a run takes it:
// with them, and the engine's cut of texts, an execution's status stays under 1 MiB
// (docs/execution.md, "How big a status gets").
const (
	// MaxSnapshotData bounds the plan's spec and its distinct workflows' specs, as JSON.
	MaxSnapshotData = 1 << 20
	// MaxSnapshotStored bounds the same compressed, as the status stores it (in JSON, base64:
	// 4/3 of it, 171 KiB).
	MaxSnapshotStored = 128 << 10
)

// maxSnapshotSize bounds a snapshot's decompressed data when it is read: a snapshot in a status
// is a user's input, and a small gzip stream can expand a thousandfold. It is far over
// MaxSnapshotData, which snapshots taken before that bound may exceed.
const maxSnapshotSize = 64 << 20

// Snapshot is what an execution runs: the plan's spec and the spec of every workflow it
// references, as they were when the run started.
type Snapshot struct {
	PlanName  string                         `json:"planName"`
	Namespace string                         `json:"namespace"`
	Plan      drv1.DRPlanSpec                `json:"plan"`
	Workflows map[string]drv1.DRWorkflowSpec `json:"workflows"` // by drv1.RefKey
}

// Workflow returns the snapshot's spec of the workflow ref points to.
func (s *Snapshot) Workflow(ref drv1.ObjectReference) (drv1.DRWorkflowSpec, bool) {
	w, ok := s.Workflows[drv1.RefKey(ref.NamespaceOr(s.Namespace), ref.Name)]
	return w, ok
}

// TakeSnapshot records plan and the workflows it references, compressed, with their generations
// and a hash. A workflow that is missing or Invalid is an error: the run cannot start.
func TakeSnapshot(plan *drv1.DRPlan, workflows Workflows) (*drv1.ExecutionSnapshot, *Snapshot, error) {
	data, snap, err := gather(plan, workflows)
	if err != nil {
		return nil, nil, err
	}
	if snap.Hash, snap.Data, err = seal(data); err != nil {
		return nil, nil, err
	}
	return snap, data, nil
}

// CheckSnapshotSize reports a plan whose snapshot would be over MaxSnapshotData or
// MaxSnapshotStored; nil also when a workflow is missing or Invalid (a run cannot start, and
// says so). A snapshot whose JSON could not compress to more than MaxSnapshotStored is not
// compressed to tell: the check runs at every validation of a plan.
func CheckSnapshotSize(plan *drv1.DRPlan, workflows Workflows) error {
	data, _, err := gather(plan, workflows)
	if err != nil {
		var tooBig *snapshotTooBig
		if errors.As(err, &tooBig) {
			return err
		}
		return nil
	}
	raw, err := encode(data)
	if err != nil || len(raw)+gzipOverhead(len(raw)) <= MaxSnapshotStored {
		return err
	}
	_, err = compress(raw)
	return err
}

// seal encodes data as a snapshot stores it: its JSON's hash, and the JSON compressed.
func seal(data *Snapshot) (hash string, compressed []byte, err error) {
	raw, err := encode(data)
	if err != nil {
		return "", nil, err
	}
	if compressed, err = compress(raw); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), compressed, nil
}

// encode is data's JSON, at most MaxSnapshotData of it.
func encode(data *Snapshot) ([]byte, error) {
	raw, err := json.Marshal(data) // maps marshal in key order: the hash is stable
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxSnapshotData {
		return nil, &snapshotTooBig{fmt.Sprintf("%d bytes of JSON", len(raw)), MaxSnapshotData}
	}
	return raw, nil
}

// compress is raw gzip-compressed, at most MaxSnapshotStored of it.
func compress(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > MaxSnapshotStored {
		return nil, &snapshotTooBig{fmt.Sprintf("%d bytes compressed", buf.Len()), MaxSnapshotStored}
	}
	return buf.Bytes(), nil
}

// gzipOverhead bounds what gzip adds to n bytes that do not compress: its header and trailer,
// and 5 bytes a stored block of at most 64 KiB (deflate falls back to stored blocks), with room
// to spare.
func gzipOverhead(n int) int {
	return 64 + 5*(n/65535+1)
}

// snapshotTooBig says a plan's snapshot is over a bound.
type snapshotTooBig struct {
	size  string
	limit int
}

func (e *snapshotTooBig) Error() string {
	return fmt.Sprintf("the plan and its workflows (the run's snapshot) are %s, over the limit of %d KiB: split the plan, or make its workflows smaller",
		e.size, e.limit>>10)
}

// Workflows finds the workflows a plan references (the informers' cache).
type Workflows interface {
	GetWorkflow(namespace, name string) (*drv1.DRWorkflow, bool)
}

// SnapshotData is what a run of the plan would run now (TakeSnapshot's data, without the record):
// the admission webhook prepares it to check the run's rights, and keeps nothing.
func SnapshotData(plan *drv1.DRPlan, workflows Workflows) (*Snapshot, error) {
	data, _, err := gather(plan, workflows)
	return data, err
}

// gather collects the plan's spec and its workflows' specs, and the record of which.
func gather(plan *drv1.DRPlan, workflows Workflows) (*Snapshot, *drv1.ExecutionSnapshot, error) {
	data := &Snapshot{PlanName: plan.Name, Namespace: plan.Namespace, Plan: plan.Spec, Workflows: map[string]drv1.DRWorkflowSpec{}}
	snap := &drv1.ExecutionSnapshot{PlanGeneration: plan.Generation, PlanUID: string(plan.UID)}
	size := 0 // of the workflows' specs as JSON, so far: a plan of 2,000 huge workflows stops early
	for _, s := range plan.Spec.EffectiveStages() {
		for _, sw := range s.Workflows {
			ns := sw.WorkflowRef.NamespaceOr(plan.Namespace)
			key := drv1.RefKey(ns, sw.WorkflowRef.Name)
			if _, done := data.Workflows[key]; done {
				continue
			}
			wf, ok := workflows.GetWorkflow(ns, sw.WorkflowRef.Name)
			switch {
			case !ok:
				return nil, nil, fmt.Errorf("DRWorkflow %s not found", key)
			case wf.Status.Phase == drv1.WorkflowInvalid:
				return nil, nil, fmt.Errorf("DRWorkflow %s is Invalid: %s", key, wf.Status.Message)
			}
			raw, err := json.Marshal(&wf.Spec)
			if err != nil {
				return nil, nil, err
			}
			if size += len(raw); size > MaxSnapshotData {
				return nil, nil, &snapshotTooBig{fmt.Sprintf("at least %d bytes of JSON", size), MaxSnapshotData}
			}
			data.Workflows[key] = *wf.Spec.DeepCopy()
			snap.Workflows = append(snap.Workflows, drv1.SnapshotWorkflow{Name: wf.Name, Namespace: ns, Generation: wf.Generation})
		}
	}
	sort.Slice(snap.Workflows, func(i, j int) bool {
		return drv1.RefKey(snap.Workflows[i].Namespace, snap.Workflows[i].Name) < drv1.RefKey(snap.Workflows[j].Namespace, snap.Workflows[j].Name)
	})
	return data, snap, nil
}

// ReadSnapshot decodes a snapshot and checks its hash.
func ReadSnapshot(snap *drv1.ExecutionSnapshot) (*Snapshot, error) {
	if snap == nil {
		return nil, fmt.Errorf("the execution has no snapshot")
	}
	zr, err := gzip.NewReader(bytes.NewReader(snap.Data))
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxSnapshotSize))
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != snap.Hash {
		return nil, fmt.Errorf("snapshot: hash mismatch (the status was edited)")
	}
	data := &Snapshot{}
	if err := json.Unmarshal(raw, data); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return data, nil
}
