package runplan_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// getter is an in-memory workflow lister, by "namespace/name".
type getter map[string]*drv1.DRWorkflow

func (g getter) GetWorkflow(ns, name string) (*drv1.DRWorkflow, bool) {
	w, ok := g[drv1.RefKey(ns, name)]
	return w, ok
}

func readyWorkflow(ns, name string, generation int64, spec drv1.DRWorkflowSpec) *drv1.DRWorkflow {
	return &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: generation},
		Spec: spec, Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowReady}}
}

func snapshotPlan() (*drv1.DRPlan, getter) {
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", Generation: 4, UID: "plan-uid"},
		Spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("region", "dr")}, Stages: []drv1.Stage{
			{Name: "first", Workflows: []drv1.StageWorkflow{entry("b"), entry("a"), entry("b")}},
			{Name: "second", DependsOn: []string{"first"}, Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "shared", Namespace: "ops"}}}},
		}}}
	workflows := getter{
		"prod/a":     readyWorkflow("prod", "a", 1, workflowsOf("a")["a"]),
		"prod/b":     readyWorkflow("prod", "b", 2, svc()),
		"ops/shared": readyWorkflow("ops", "shared", 7, workflowsOf("shared:x,y")["shared"]),
	}
	return plan, workflows
}

func TestSnapshotRoundTrip(t *testing.T) {
	plan, workflows := snapshotPlan()
	snap, data, err := runplan.TakeSnapshot(plan, workflows)
	require.NoError(t, err)
	assert.Equal(t, int64(4), snap.PlanGeneration)
	assert.Equal(t, "plan-uid", snap.PlanUID)
	assert.Equal(t, []drv1.SnapshotWorkflow{{Name: "shared", Namespace: "ops", Generation: 7},
		{Name: "a", Namespace: "prod", Generation: 1}, {Name: "b", Namespace: "prod", Generation: 2}}, snap.Workflows,
		"each workflow once, sorted by namespace/name")
	assert.Len(t, snap.Hash, 64)

	read, err := runplan.ReadSnapshot(snap)
	require.NoError(t, err)
	assert.Equal(t, data, read)
	assert.Equal(t, plan.Spec, read.Plan)
	w, ok := read.Workflow(drv1.ObjectReference{Name: "shared", Namespace: "ops"})
	require.True(t, ok)
	assert.Equal(t, workflows["ops/shared"].Spec, w)
	_, ok = read.Workflow(drv1.ObjectReference{Name: "shared"})
	assert.False(t, ok, "a reference without a namespace is in the plan's")

	again, _, err := runplan.TakeSnapshot(plan, workflows)
	require.NoError(t, err)
	assert.Equal(t, snap.Hash, again.Hash, "the hash is stable")
}

func TestTakeSnapshotRefuses(t *testing.T) {
	plan, workflows := snapshotPlan()
	delete(workflows, "ops/shared")
	_, _, err := runplan.TakeSnapshot(plan, workflows)
	assert.EqualError(t, err, "DRWorkflow ops/shared not found")

	plan, workflows = snapshotPlan()
	workflows["prod/a"].Status = drv1.DRWorkflowStatus{Phase: drv1.WorkflowInvalid, Message: "spec.actions[0]: bad"}
	_, _, err = runplan.TakeSnapshot(plan, workflows)
	assert.EqualError(t, err, "DRWorkflow prod/a is Invalid: spec.actions[0]: bad")
}

func TestSnapshotSizeBounds(t *testing.T) {
	// withManifests gives workflow "a" n actions, each creating a ConfigMap with value v.
	withManifests := func(n int, v func(i int) string) (*drv1.DRPlan, getter) {
		plan, workflows := snapshotPlan()
		spec := drv1.DRWorkflowSpec{}
		for i := range n {
			a := create(fmt.Sprintf("cm-%d", i))
			a.Resource.Manifest = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  v: %q\n", i, v(i))
			spec.Actions = append(spec.Actions, a)
		}
		workflows["prod/a"].Spec = spec
		return plan, workflows
	}
	random := func(n int) func(int) string {
		return func(int) string {
			b := make([]byte, n/2)
			_, _ = rand.Read(b)
			return hex.EncodeToString(b)
		}
	}
	for _, tc := range []struct {
		name string
		plan func() (*drv1.DRPlan, getter)
		err  string
	}{
		{name: "2,000 short manifests", plan: func() (*drv1.DRPlan, getter) { return withManifests(2000, func(int) string { return "x" }) }},
		{name: "1.2 MiB of JSON", plan: func() (*drv1.DRPlan, getter) {
			return withManifests(200, func(int) string { return strings.Repeat("x", 6000) })
		}, err: "over the limit of 1024 KiB"},
		{name: "512 KiB that does not compress", plan: func() (*drv1.DRPlan, getter) { return withManifests(128, random(4000)) },
			err: "bytes compressed, over the limit of 128 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, workflows := tc.plan()
			snap, _, err := runplan.TakeSnapshot(plan, workflows)
			checked := runplan.CheckSnapshotSize(plan, workflows)
			if tc.err == "" {
				require.NoError(t, err)
				require.NoError(t, checked)
				assert.LessOrEqual(t, len(snap.Data), runplan.MaxSnapshotStored)
				t.Logf("stored: %d bytes", len(snap.Data))
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.ErrorContains(t, checked, tc.err)
		})
	}
	plan, workflows := snapshotPlan()
	delete(workflows, "ops/shared")
	assert.NoError(t, runplan.CheckSnapshotSize(plan, workflows), "a missing workflow is reported elsewhere")
}

// sealed is a snapshot of raw as TakeSnapshot would write it: gzip-compressed, with its hash.
func sealed(raw string) *drv1.ExecutionSnapshot {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(raw))
	_ = zw.Close()
	sum := sha256.Sum256([]byte(raw))
	return &drv1.ExecutionSnapshot{Data: buf.Bytes(), Hash: hex.EncodeToString(sum[:])}
}

func TestReadSnapshotRefuses(t *testing.T) {
	plan, workflows := snapshotPlan()
	good, _, err := runplan.TakeSnapshot(plan, workflows)
	require.NoError(t, err)
	edited := good.DeepCopy()
	edited.Hash = strings.Repeat("0", 64)
	truncated := good.DeepCopy()
	truncated.Data = truncated.Data[:len(truncated.Data)/2]
	tests := []struct {
		name string
		snap *drv1.ExecutionSnapshot
		err  string
	}{
		{"none", nil, "the execution has no snapshot"},
		{"not gzip", &drv1.ExecutionSnapshot{Data: []byte(`{"plan": {"workflowRef": {"name": "a"}}}`)}, "snapshot: gzip: invalid header"},
		{"cut short", truncated, "snapshot: unexpected EOF"},
		{"edited", edited, "snapshot: hash mismatch (the status was edited)"},
		{"not JSON", sealed("plan: yaml"), "snapshot: invalid character 'p' looking for beginning of value"},
		{"JSON of another shape", sealed(`{"plan": []}`), "snapshot: json: cannot unmarshal array into Go struct field Snapshot.plan of type v1alpha1.DRPlanSpec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runplan.ReadSnapshot(tc.snap)
			assert.EqualError(t, err, tc.err)
		})
	}
}

// FuzzReadSnapshot feeds ReadSnapshot what a user may write into an execution's status: it must
// never panic, and what it accepts must plan like a snapshot (or fail to, with an error).
func FuzzReadSnapshot(f *testing.F) {
	plan, workflows := snapshotPlan()
	good, _, err := runplan.TakeSnapshot(plan, workflows)
	require.NoError(f, err)
	f.Add(good.Data, good.Hash)
	f.Add([]byte{}, "")
	f.Add(sealed(`{"plan": {"stages": [{"name": "a", "dependsOn": ["a"]}]}}`).Data, sealed(`{"plan": {"stages": [{"name": "a", "dependsOn": ["a"]}]}}`).Hash)
	f.Add(sealed(`{"workflows": {"prod/a": {"actions": [{"name": "x"}]}}, "plan": {"workflowRef": {"name": "a"}}}`).Data, "")
	decide := newRules(f)
	f.Fuzz(func(t *testing.T, data []byte, hash string) {
		snap, err := runplan.ReadSnapshot(&drv1.ExecutionSnapshot{Data: data, Hash: hash})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "snapshot: ") {
				t.Fatalf("an error that does not say it is the snapshot's: %v", err)
			}
			return
		}
		_, _ = runplan.Prepare(execution("e", drv1.OperationExecute), snap, noSecrets, started, decide)
	})
}

// FuzzReadSnapshotJSON fuzzes what is inside a sealed snapshot: any JSON with a matching hash.
func FuzzReadSnapshotJSON(f *testing.F) {
	plan, workflows := snapshotPlan()
	_, data, err := runplan.TakeSnapshot(plan, workflows)
	require.NoError(f, err)
	taken, err := json.Marshal(data)
	require.NoError(f, err)
	f.Add(string(taken))
	f.Add(`{"planName":"p","namespace":"prod","plan":{"workflowRef":{"name":"a"}},"workflows":{"prod/a":{"actions":[{"name":"x","type":"HTTP","http":{"url":"https://x/{{ .planName }}"}}]}}}`)
	f.Add(`{"plan":{"stages":[{"name":"a","dependsOn":["b"]},{"name":"b","dependsOn":["a"]}]}}`)
	f.Add(`null`)
	decide := newRules(f)
	f.Fuzz(func(t *testing.T, raw string) {
		snap, err := runplan.ReadSnapshot(sealed(raw))
		if err != nil {
			return
		}
		_, _ = runplan.Prepare(execution("e", drv1.OperationExecute), snap, noSecrets, started, decide)
	})
}

// TestGzipOverheadBounds: what CheckSnapshotSize does not compress could not compress past the
// bound: data that does not compress at all grows by less than gzipOverhead.
func TestGzipOverheadBounds(t *testing.T) {
	for _, n := range []int{0, 1, 1000, 65535, 65536, runplan.MaxSnapshotStored, 3 * 65536} {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write(b)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		assert.LessOrEqual(t, buf.Len(), n+runplan.GzipOverhead(n), "%d random bytes", n)
	}
}
