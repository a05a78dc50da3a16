package app

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/bkbcs/drplan-controller/metrics"
)

// TestReplicaBeingDeletedDoesNotLead: a replica that gets the free lease while its Pod is being
// deleted (its SIGTERM not there yet, as when a scale-down's SIGTERMs come apart) starts no
// workers, hands the lease back at once, and stops with its SIGTERM; one whose Pod is not being
// deleted leads.
func TestReplicaBeingDeletedDoesNotLead(t *testing.T) {
	for _, deleting := range []bool{true, false} {
		t.Run(map[bool]string{true: "pod being deleted", false: "pod running"}[deleting], func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "drplan-system", Name: "replica-1"}}
			if deleting {
				now := metav1.Now()
				pod.DeletionTimestamp, pod.Finalizers = &now, []string{"kubernetes"}
			}
			kube := fake.NewSimpleClientset(pod)
			o := LeaderElectionOptions{Namespace: "drplan-system", Name: "lease", Identity: "replica-1_x", Pod: "replica-1",
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
			ctx, sigterm := context.WithCancel(context.Background())
			defer sigterm()
			var led atomic.Bool
			done := make(chan error, 1)
			go func() {
				done <- leaderElection(kube, o, metrics.NewMetrics())(ctx, func(lead context.Context, _ <-chan struct{}) {
					led.Store(true)
					<-lead.Done()
				})
			}()
			holder := func() (string, bool) {
				l, err := kube.CoordinationV1().Leases("drplan-system").Get(context.Background(), "lease", metav1.GetOptions{})
				if err != nil || l.Spec.HolderIdentity == nil {
					return "", false
				}
				return *l.Spec.HolderIdentity, true
			}
			if deleting {
				// Taken (the Lease exists), then handed back: no holder.
				require.Eventually(t, func() bool { h, ok := holder(); return ok && h == "" }, 10*time.Second, 10*time.Millisecond)
				select {
				case err := <-done:
					t.Fatalf("returned before its SIGTERM: %v", err)
				case <-time.After(300 * time.Millisecond):
				}
				assert.False(t, led.Load(), "no workers ran")
			} else {
				require.Eventually(t, led.Load, 10*time.Second, 10*time.Millisecond)
				h, _ := holder()
				assert.Equal(t, "replica-1_x", h)
			}
			sigterm()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("did not return after its SIGTERM")
			}
		})
	}
}
