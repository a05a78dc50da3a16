package app

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/informers"
	"github.com/bkbcs/drplan-controller/metrics"
	"github.com/bkbcs/drplan-controller/rules"
)

// newWebhook is the validating admission webhook: it decides with the controller's rules from the
// controller's caches (and, for what they lack, the API server through the webhook's own client),
// and answers "starting, retry" until they have synced; me is the controller's own user; az
// checks rights, through the webhook's own SubjectAccessReview client.
func newWebhook(cl *clients, decide *rules.Rules, az *access.Authorizer, synced func() bool, m *metrics.Metrics, me self) *admission.Webhook {
	return &admission.Webhook{Decider: &admission.Decider{Rules: decide, Access: az}, Controller: me.Username, ControllerUID: me.UID, Ready: synced, Observe: m.WebhookDecided,
		State: func(ctx context.Context) admission.State {
			return &admissionState{Informers: cl.inf, dr: cl.hookDR, ctx: ctx}
		}}
}

// webhookCertificate returns where the webhook's serving certificate comes from: the files in
// CertDir, or else a CertManager, started here, that keeps its own in a Secret.
func webhookCertificate(ctx context.Context, kube kubernetes.Interface, w WebhookOptions) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if w.CertDir != "" {
		return admission.FileCertificate(w.CertDir), nil
	}
	m := &admission.CertManager{Client: kube, Namespace: w.Namespace, SecretName: w.SecretName,
		ServiceName: w.ServiceName, WebhookConfigName: w.ConfigName}
	renew := w.RenewCheck
	if renew == 0 {
		renew = time.Hour
	}
	if err := m.Start(ctx, renew); err != nil {
		return nil, err
	}
	return m.GetCertificate, nil
}

// admissionState is what the webhook reads: the informers' caches, and the API server when an
// object is not in the cache yet (a plan and its execution applied together must not be refused
// because the cache is a few milliseconds behind).
type admissionState struct {
	*informers.Informers
	dr  versioned.Interface
	ctx context.Context // the request's

	mu  sync.Mutex
	err error // the first read that failed otherwise than NotFound
}

// ReadError makes the webhook answer "retry" when a read failed: no decision on a guess.
func (s *admissionState) ReadError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// liveReadTimeout bounds a read that falls back to the API server; the webhook's own timeout is
// a few seconds.
const liveReadTimeout = 2 * time.Second

func (s *admissionState) GetWorkflow(namespace, name string) (*drv1.DRWorkflow, bool) {
	if wf, ok := s.Informers.GetWorkflow(namespace, name); ok {
		return wf, true
	}
	return live(s, func(ctx context.Context) (*drv1.DRWorkflow, error) {
		return s.dr.DrV1alpha1().DRWorkflows(namespace).Get(ctx, name, metav1.GetOptions{})
	})
}

func (s *admissionState) GetPlan(namespace, name string) (*drv1.DRPlan, bool) {
	if p, ok := s.Informers.GetPlan(namespace, name); ok {
		return p, true
	}
	return live(s, func(ctx context.Context) (*drv1.DRPlan, error) {
		return s.dr.DrV1alpha1().DRPlans(namespace).Get(ctx, name, metav1.GetOptions{})
	})
}

func (s *admissionState) GetExecution(namespace, name string) (*drv1.DRPlanExecution, bool) {
	if e, ok := s.Informers.GetExecution(namespace, name); ok {
		return e, true
	}
	return live(s, func(ctx context.Context) (*drv1.DRPlanExecution, error) {
		return s.dr.DrV1alpha1().DRPlanExecutions(namespace).Get(ctx, name, metav1.GetOptions{})
	})
}

// live reads an object the cache does not have, within the request's deadline. NotFound is
// absent; any other error is recorded for ReadError.
func live[T any](s *admissionState, get func(context.Context) (*T, error)) (*T, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, liveReadTimeout)
	defer cancel()
	obj, err := get(ctx)
	switch {
	case err == nil:
		return obj, true
	case !apierrors.IsNotFound(err):
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return nil, false // a client returns an empty object with its error
}
