package actions

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	discoveryfake "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/restmapper"
	clienttesting "k8s.io/client-go/testing"

	"github.com/bkbcs/drplan-controller/backoff"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

var (
	configMaps = schema.GroupResource{Resource: "configmaps"}
	refused    = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset      = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
)

// fakeFactory is a ClientFactory whose clients (every identity's) are client, and whose
// discovery knows ConfigMaps and Localizations.
func fakeFactory(client dynamic.Interface) *ClientFactory {
	verbs := metav1.Verbs{"get", "list", "watch", "create", "update", "patch", "delete"}
	disc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: verbs}}},
		{GroupVersion: "batch/v1", APIResources: []metav1.APIResource{{Name: "jobs", Namespaced: true, Kind: "Job", Verbs: verbs}}},
		{GroupVersion: clusternetAPIVersion, APIResources: []metav1.APIResource{{Name: "localizations", Namespaced: true, Kind: "Localization", Verbs: verbs}}},
	}}}
	return &ClientFactory{
		mapper:  &rediscoveringMapper{DeferredDiscoveryRESTMapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))},
		clients: map[string]dynamic.Interface{"": client},
	}
}

// TestResourceRunnerRetriesTransientErrors runs a Create whose first calls fail as the table says
// (then the fake API server answers): transient errors are retried and the message says so;
// others fail the action at once.
func TestResourceRunnerRetriesTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		errs      []error // answers of the first creates; then the object is created
		budget    time.Duration
		wantCalls int32
		wantErr   func(error) bool // nil: success
		wantNote  string           // the end of the message (or error): what was retried, and why
	}{
		{name: "no error", wantCalls: 1},
		{name: "refused connections", errs: []error{refused, refused}, wantCalls: 3,
			wantNote: ": the API server was unreachable)"},
		{name: "connection reset", errs: []error{reset}, wantCalls: 2, wantNote: ": the API server was unreachable)"},
		{name: "429 with Retry-After", errs: []error{apierrors.NewTooManyRequests("slow down", 1)}, wantCalls: 2,
			wantNote: ": the API server asked to slow down (429))"},
		{name: "503", errs: []error{apierrors.NewServiceUnavailable("starting")}, wantCalls: 2,
			wantNote: ": the API server was unavailable (503))"},
		{name: "500", errs: []error{apierrors.NewInternalError(errors.New("etcd leader changed"))}, wantCalls: 2,
			wantNote: ": the API server answered 500)"},
		{name: "server timeout", errs: []error{apierrors.NewServerTimeout(configMaps, "create", 1)}, wantCalls: 2,
			wantNote: ": the API server timed out)"},
		{name: "client timeout", errs: []error{context.DeadlineExceeded}, wantCalls: 2, wantNote: ": the API server timed out)"},
		{name: "501 is final", errs: []error{apierrors.NewGenericServerResponse(501, "create", configMaps, "x", "", 0, false)},
			wantCalls: 1, wantErr: func(err error) bool { return apierrors.ReasonForError(err) != "" }},
		{name: "too large for etcd is final", errs: []error{apierrors.NewInternalError(errors.New("etcdserver: request is too large"))},
			wantCalls: 1, wantErr: apierrors.IsInternalError},
		{name: "forbidden is final", errs: []error{apierrors.NewForbidden(configMaps, "x", errors.New("no"))}, wantCalls: 1,
			wantErr: apierrors.IsForbidden},
		{name: "invalid is final", errs: []error{apierrors.NewBadRequest("no")}, wantCalls: 1, wantErr: apierrors.IsBadRequest},
		{name: "conflict is final for a create", errs: []error{apierrors.NewConflict(configMaps, "x", errors.New("changed"))},
			wantCalls: 1, wantErr: apierrors.IsConflict},
		{name: "cancelled is final", errs: []error{context.Canceled}, wantCalls: 1,
			wantErr: func(err error) bool { return errors.Is(err, context.Canceled) }},
		{name: "unavailable past the budget", budget: time.Second, wantCalls: 3, wantErr: apierrors.IsServiceUnavailable,
			errs:     []error{apierrors.NewServiceUnavailable("down"), apierrors.NewServiceUnavailable("down"), apierrors.NewServiceUnavailable("down")},
			wantNote: ": the API server was unavailable (503))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
			var calls atomic.Int32
			client.PrependReactor("create", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) {
				if n := int(calls.Add(1)); n <= len(tc.errs) {
					return true, nil, tc.errs[n-1]
				}
				return false, nil, nil
			})
			f := fakeFactory(client)
			f.SetAPIRetryTimeout(tc.budget)
			res, err := NewResourceRunner(f).Run(t.Context(), resourceRequest("prod", drv1.OperationCreate, drConfigManifest))

			assert.Equal(t, tc.wantCalls, calls.Load(), "calls")
			assert.Equal(t, tc.wantCalls-1, res.Retries, "retries counted")
			msg := res.Message
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Regexp(t, `^ConfigMap prod/dr-config-payments created`, msg)
			} else {
				require.Error(t, err)
				assert.True(t, tc.wantErr(err), "the API error is kept: %v", err)
				msg = err.Error()
			}
			if tc.wantNote == "" {
				assert.NotContains(t, msg, "(after ")
				return
			}
			assert.Regexp(t, ` \(after [0-9]+ retr(y|ies) over [0-9.]+m?s`, msg)
			assert.Contains(t, msg, tc.wantNote)
		})
	}
}

// TestCreateCutOffAfterItWasDone plays a create that the API server made, but whose answer was
// lost with the connection: the retry finds the object, made by this execution, and adopts it
// instead of failing on AlreadyExists; another's object of that name is never taken.
func TestCreateCutOffAfterItWasDone(t *testing.T) {
	for _, tc := range []struct {
		name, execution string // the label of the object there
		wantErr         string
	}{
		{name: "this execution's", execution: testExecution},
		{name: "another's", execution: "someone-else", wantErr: "already exists and was not created by this execution"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
				map[schema.GroupVersionResource]string{{Version: "v1", Resource: "configmaps"}: "ConfigMapList"})
			var calls atomic.Int32
			client.PrependReactor("create", "configmaps", func(a clienttesting.Action) (bool, runtime.Object, error) {
				if calls.Add(1) > 1 {
					return false, nil, nil // the tracker's answer: AlreadyExists
				}
				obj := a.(clienttesting.CreateAction).GetObject().DeepCopyObject()
				labelled, err := apimeta.Accessor(obj) // labelled by the runner
				require.NoError(t, err)
				labels := labelled.GetLabels()
				labels[drv1.LabelExecution] = tc.execution
				labelled.SetLabels(labels)
				_, _, err = clienttesting.ObjectReaction(client.Tracker())(clienttesting.NewCreateAction(a.GetResource(), a.GetNamespace(), obj))
				require.NoError(t, err)
				return true, nil, reset // made, but the answer is lost
			})
			res, err := NewResourceRunner(fakeFactory(client)).Run(t.Context(), resourceRequest("prod", drv1.OperationCreate, drConfigManifest))
			assert.EqualValues(t, 2, calls.Load())
			list, lerr := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("prod").List(t.Context(), metav1.ListOptions{})
			require.NoError(t, lerr)
			assert.Len(t, list.Items, 1, "made once")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Regexp(t, `^ConfigMap prod/dr-config-payments created \(by an earlier attempt of this action\) \(after 1 retry over .*: the API server was unreachable\)$`, res.Message)
			assert.EqualValues(t, 1, res.Retries)
		})
	}
}

// TestClusternetRunnerRetriesTransientErrors: a Localization's calls are a KubernetesResource
// action's, retried alike.
func TestClusternetRunnerRetriesTransientErrors(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	var calls atomic.Int32
	client.PrependReactor("create", "localizations", func(clienttesting.Action) (bool, runtime.Object, error) {
		if calls.Add(1) == 1 {
			return true, nil, apierrors.NewServiceUnavailable("starting")
		}
		return false, nil, nil
	})
	req := Request{Body: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: &drv1.LocalizationAction{
		Operation: "Create", Name: "scaled-app", Namespace: "clusternet-x",
		Feed: &drv1.Feed{APIVersion: "apps/v1", Kind: "Deployment", Name: "d"}}},
		Execution: ExecutionRef{Namespace: "prod", Name: testExecution, UID: testExecUID, PlanName: testPlan}, ActionID: "s/0/l"}
	res, err := NewClusternetRunner(NewResourceRunner(fakeFactory(client))).Run(t.Context(), req)
	require.NoError(t, err)
	assert.EqualValues(t, 2, calls.Load())
	assert.EqualValues(t, 1, res.Retries)
	assert.Regexp(t, `^Localization clusternet-x/scaled-app created \(after 1 retry over [0-9.]+m?s: the API server was unavailable \(503\)\)$`, res.Message)
}

// TestJobRunnerRetriesUntilItsTimeout: a Job action's calls retry until its timeout, or without
// one until the factory's APIRetryTimeout.
func TestJobRunnerRetriesUntilItsTimeout(t *testing.T) {
	decide, err := rules.New(rules.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, timeout string
		factory       time.Duration
	}{
		{name: "the Job's timeout", timeout: "1s", factory: time.Hour},
		{name: "the factory's, without one", factory: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
			client.PrependReactor("create", "jobs", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, refused
			})
			f := fakeFactory(client)
			f.SetAPIRetryTimeout(tc.factory)
			req := Request{Body: drv1.ActionBody{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{Name: "j", Namespace: "prod",
				Timeout: drv1.Duration(tc.timeout)}},
				Execution: ExecutionRef{Namespace: "prod", Name: testExecution, UID: testExecUID, PlanName: testPlan}, ActionID: "s/0/j"}
			began := time.Now()
			res, err := NewJobRunner(decide.Env, NewResourceRunner(f)).Run(t.Context(), req)
			assert.Less(t, time.Since(began), 2*time.Second, "gave up at the budget")
			assert.ErrorIs(t, err, syscall.ECONNREFUSED)
			assert.Regexp(t, `^create Job prod/j: .* \(after 2 retries over [0-9.]+m?s: the API server was unreachable\)$`, err.Error())
			assert.EqualValues(t, 2, res.Retries)
		})
	}
}

func TestRetryTransient(t *testing.T) {
	var none *ClientFactory // the default budget, and no readiness asked
	calls := 0
	err := none.RetryTransient(t.Context(), func(context.Context) error {
		if calls++; calls < 3 {
			return refused
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, calls)

	f := &ClientFactory{}
	f.SetAPIRetryTimeout(500 * time.Millisecond)
	calls = 0
	err = f.RetryTransient(t.Context(), func(context.Context) error {
		calls++
		return apierrors.NewServiceUnavailable("down")
	})
	assert.True(t, apierrors.IsServiceUnavailable(err), "unwraps to the last error: %v", err)
	assert.Regexp(t, `^down \(after 1 retry over [0-9.]+m?s: the API server was unavailable \(503\)\)$`, err.Error())
	assert.Equal(t, 2, calls, "no try that a full wait would put past the budget")

	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = none.RetryTransient(ctx, func(context.Context) error {
		calls++
		cancel()
		return refused
	})
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Equal(t, 1, calls, "a cancelled context stops retrying")
}

// TestRefusedWhileStarting: a 401 or 403 is final, unless the API server says it is not ready
// (one starting up refuses what its authorizer has not loaded yet): then it is retried.
func TestRefusedWhileStarting(t *testing.T) {
	forbidden := apierrors.NewForbidden(configMaps, "x", errors.New("RBAC: clusterrole not found"))
	for _, tc := range []struct {
		name      string
		err       error
		ready     func(context.Context) bool // nil: never asked
		wantCalls int
	}{
		{name: "403 from a ready server", err: forbidden, ready: func(context.Context) bool { return true }, wantCalls: 1},
		{name: "403, readiness not asked", err: forbidden, wantCalls: 1},
		{name: "403 from a starting server", err: forbidden, ready: func(context.Context) bool { return false }, wantCalls: 3},
		{name: "401 from a starting server", err: apierrors.NewUnauthorized("token not found yet"), ready: func(context.Context) bool { return false }, wantCalls: 3},
		{name: "404 from a starting server", err: apierrors.NewNotFound(configMaps, "x"), ready: func(context.Context) bool { return false }, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &apiCalls{wait: backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond}, deadline: time.Now().Add(time.Minute), ready: tc.ready}
			calls := 0
			_, err := callAPI(t.Context(), c, false, func(context.Context) (struct{}, error) {
				if calls++; calls < 3 {
					return struct{}{}, tc.err
				}
				return struct{}{}, nil
			})
			assert.Equal(t, tc.wantCalls, calls)
			if tc.wantCalls == 3 {
				require.NoError(t, err)
				assert.Contains(t, c.note(), ": the API server was starting (not ready, it refused what it allows once ready))")
			} else {
				assert.Equal(t, tc.err, err)
			}
		})
	}
}
