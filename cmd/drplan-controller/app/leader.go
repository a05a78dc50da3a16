package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/controller"
	"github.com/bkbcs/drplan-controller/metrics"
)

// LeaderElectionOptions make replicas share the work: one leader (the holder of a Lease)
// reconciles and runs actions; the others keep their caches warm, serve the webhook and take over
// when the lease is not renewed.
type LeaderElectionOptions struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity of this replica (default: host name and a random suffix).
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod: client-go's (defaults 15s, 10s, 2s). A standby
	// takes over at most LeaseDuration after the leader stopped renewing.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Pod is the name of this replica's Pod in Namespace, when it runs in one: a replica whose
	// Pod is being deleted never starts to lead (see elect). Empty: not checked.
	Pod string
}

// ErrLostLeadership ends a controller whose lease was taken over: it stops at once (another
// replica is running the executions now) and should be restarted as a standby.
var ErrLostLeadership = errors.New("lost the leader lease")

// leaderElection returns the controller's elect function.
func leaderElection(kube kubernetes.Interface, o LeaderElectionOptions, m *metrics.Metrics) controller.Elect {
	o = o.withDefaults()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	deleting := func(context.Context) bool { return false }
	if o.Pod != "" {
		deleting = func(ctx context.Context) bool { return podDeleting(ctx, kube, o.Namespace, o.Pod) }
	}
	return func(ctx context.Context, lead func(context.Context, <-chan struct{})) error {
		return elect(ctx, lock, o, m, deleting, lead)
	}
}

// podDeleting reports whether the Pod is being deleted: its deletionTimestamp is set, though its
// kubelet may not have sent the SIGTERM yet. When that cannot be told, it is not (the replica
// leads, as without the check).
func podDeleting(ctx context.Context, kube kubernetes.Interface, namespace, name string) bool {
	p, err := kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		klog.FromContext(ctx).Info("Could not tell whether this replica's pod is being deleted; leading", "pod", namespace+"/"+name, "err", err)
		return false
	}
	return p.DeletionTimestamp != nil
}

// withDefaults fills in what o leaves zero.
func (o LeaderElectionOptions) withDefaults() LeaderElectionOptions {
	if o.Identity == "" {
		host, _ := os.Hostname()
		o.Identity = host + "_" + string(uuid.NewUUID())
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	return o
}

// elect runs lead while this replica holds the lease, and returns once ctx ends (a leader first
// lets its workers drain, then releases the lease) or the lease is lost (ErrLostLeadership).
//
// A replica that gets the lease while its Pod is being deleted (deleting says so) does not lead:
// it hands the lease back and waits for its SIGTERM. Its kubelet has not sent it yet, but will: in a
// scale-down or a rollout every replica's Pod is deleted at once, their SIGTERMs come apart
// (another node, a busy kubelet), and the leader that got its own first releases the lease as
// soon as it has drained. Without this, a replica about to stop would take the lease then, resume
// the runs and start their next actions while the controller is being stopped.
func elect(ctx context.Context, lock resourcelock.Interface, o LeaderElectionOptions, m *metrics.Metrics, deleting func(context.Context) bool, lead func(context.Context, <-chan struct{})) error {
	logger := klog.FromContext(ctx)
	// The lease is released only after the workers have drained, so a standby never resumes
	// a run while this replica still has its actions in flight.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var lostLease, started, declined atomic.Bool
	workersDone := make(chan struct{})
	abandon := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: "drplan-controller", ReleaseOnCancel: true,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				if deleting(leadCtx) {
					declined.Store(true)
					logger.Info("This replica's pod is being deleted: not leading; releasing the lease", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
					stopElecting()
					return
				}
				started.Store(true)
				m.SetLeader(true)
				logger.Info("Became the leader", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
				// The workers stop when the process stops (with the shutdown grace) or when
				// the lease is lost (then at once: it may be someone else's now).
				work, stop := context.WithCancel(ctx)
				leading := make(chan struct{})
				go func() {
					// Watch the lease until the workers are done, through the shutdown
					// grace too: a lease lost then means another replica may be running.
					select {
					case <-leadCtx.Done():
						if ctx.Err() == nil {
							lostLease.Store(true)
						}
						if electCtx.Err() == nil { // not our own release after draining
							close(abandon) // no grace: the runs may be another's already
						}
					case <-leading:
					}
					stop()
				}()
				lead(work, abandon)
				close(leading)
				stop()
				close(workersDone)
				stopElecting() // release the lease now that nothing runs
			},
			OnStoppedLeading: func() { m.SetLeader(false) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	go func() {
		<-ctx.Done()
		if !started.Load() {
			stopElecting() // a standby stops at once
		}
	}()
	le.Run(electCtx)
	if started.Load() {
		<-workersDone
	}
	if declined.Load() {
		<-ctx.Done() // a standby again, until the SIGTERM on its way
	}
	if lostLease.Load() {
		return ErrLostLeadership
	}
	return nil
}
