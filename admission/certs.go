package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/admission/pki"
)

// FileCertificate serves the tls.crt and tls.key of dir (a mounted Secret, or the local run's
// files), re-reading them when they change, so a certificate renewed on disk is served at once.
func FileCertificate(dir string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var (
		mu      sync.Mutex
		cached  *tls.Certificate
		modTime time.Time
	)
	certPath, keyPath := filepath.Join(dir, corev1.TLSCertKey), filepath.Join(dir, corev1.TLSPrivateKeyKey)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		ci, err := os.Stat(certPath)
		if err != nil {
			return nil, fmt.Errorf("webhook certificate: %w", err)
		}
		ki, err := os.Stat(keyPath)
		if err != nil {
			return nil, fmt.Errorf("webhook certificate key: %w", err)
		}
		newest := ci.ModTime()
		if ki.ModTime().After(newest) {
			newest = ki.ModTime()
		}
		if cached == nil || newest.After(modTime) {
			pair, err := tls.LoadX509KeyPair(certPath, keyPath)
			if err != nil {
				return nil, fmt.Errorf("webhook certificate in %s: %w", dir, err)
			}
			cached, modTime = &pair, newest
		}
		return cached, nil
	}
}

// Secret keys of a self-managed certificate, besides tls.crt and tls.key.
const (
	secretCACert     = "ca.crt"
	secretCAKey      = "ca.key"
	secretPreviousCA = "ca-previous.crt" // the CA before the last rotation, trusted until it expires
)

// CertManager keeps the webhook's serving certificate in a cluster, with no cert-manager
// required: a CA and a certificate for the Service's names live in a Secret; the CA bundle of the
// validating and the mutating webhook configuration is kept equal to the CAs in use; both are
// renewed well before they expire. Every replica runs it and serves from the Secret; writes use optimistic
// concurrency, so replicas racing converge on one certificate.
type CertManager struct {
	Client kubernetes.Interface
	// Namespace and SecretName locate the Secret; ServiceName is the webhook's Service in the
	// same namespace; WebhookConfigName names the ValidatingWebhookConfiguration and the
	// MutatingWebhookConfiguration.
	Namespace, SecretName, ServiceName, WebhookConfigName string
	// CAValidity and CertValidity default to 5 years and 1 year; a certificate (or the CA) is
	// renewed once less than a third of its validity is left.
	CAValidity, CertValidity time.Duration

	current atomic.Pointer[tls.Certificate]
}

// GetCertificate serves the current certificate; it is the TLS server's callback.
func (m *CertManager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.current.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the webhook certificate is not ready yet")
}

// Hosts are the names the API server uses to reach the Service.
func (m *CertManager) Hosts() []string {
	svc := m.ServiceName + "." + m.Namespace
	return []string{svc + ".svc", svc, m.ServiceName, svc + ".svc.cluster.local"}
}

func (m *CertManager) validity() (ca, cert time.Duration) {
	ca, cert = m.CAValidity, m.CertValidity
	if ca == 0 {
		ca = 5 * 365 * 24 * time.Hour
	}
	if cert == 0 {
		cert = 365 * 24 * time.Hour
	}
	return ca, cert
}

// Start ensures the certificate now, then keeps it so in the background until ctx ends: every
// interval, and at once whenever a webhook configuration is created or changed (an upgrade or
// a re-applied manifest brings it back without the caBundle, and with failurePolicy Fail every
// write of our kinds would fail until the next check). Its error is the first Ensure's: a
// controller that cannot serve its webhook fails at start.
func (m *CertManager) Start(ctx context.Context, interval time.Duration) error {
	if err := m.Ensure(ctx); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	m.watchConfig(ctx, changed)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-changed:
			}
			if err := m.Ensure(ctx); err != nil {
				klog.FromContext(ctx).Error(err, "Renewing the webhook certificate failed; will retry", "secret", m.Namespace+"/"+m.SecretName)
			}
		}
	}()
	return nil
}

// watchConfig signals changed when one of the webhook configurations is added or updated. It
// watches those objects only (a metadata.name field selector, which RBAC's resourceNames can
// allow).
func (m *CertManager) watchConfig(ctx context.Context, changed chan<- struct{}) {
	selector := fields.OneTermEqualSelector("metadata.name", m.WebhookConfigName).String()
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	for resource, obj := range map[string]runtime.Object{
		"validatingwebhookconfigurations": &admissionregistrationv1.ValidatingWebhookConfiguration{},
		"mutatingwebhookconfigurations":   &admissionregistrationv1.MutatingWebhookConfiguration{},
	} {
		lw := cache.NewFilteredListWatchFromClient(m.Client.AdmissionregistrationV1().RESTClient(), resource,
			metav1.NamespaceAll, func(o *metav1.ListOptions) { o.FieldSelector = selector })
		inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { notify() },
			UpdateFunc: func(any, any) { notify() },
		})
		go inf.Run(ctx.Done())
	}
}

// Ensure makes the Secret hold a CA and a certificate with time left, the webhook configuration
// trust it, and the server serve it.
func (m *CertManager) Ensure(ctx context.Context) error {
	var secret *corev1.Secret
	for attempt := 0; ; attempt++ {
		s, err := m.Client.CoreV1().Secrets(m.Namespace).Get(ctx, m.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: m.SecretName, Namespace: m.Namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "drplan-controller"}}, Type: corev1.SecretTypeOpaque}
		} else if err != nil {
			return fmt.Errorf("read the webhook certificate Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		}
		renewed, changed, err := m.renew(s)
		if err != nil {
			return err
		}
		if !changed {
			secret = s
			break
		}
		if renewed.ResourceVersion == "" {
			_, err = m.Client.CoreV1().Secrets(m.Namespace).Create(ctx, renewed, metav1.CreateOptions{})
		} else {
			_, err = m.Client.CoreV1().Secrets(m.Namespace).Update(ctx, renewed, metav1.UpdateOptions{})
		}
		if err == nil {
			secret = renewed
			klog.FromContext(ctx).Info("Issued the webhook certificate", "secret", m.Namespace+"/"+m.SecretName, "hosts", m.Hosts())
			break
		}
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 5 {
			continue // another replica renewed it: use theirs
		}
		return fmt.Errorf("write the webhook certificate Secret %s/%s: %w", m.Namespace, m.SecretName, err)
	}
	// Trust first, then serve: the API server must accept the new certificate before it is used.
	if err := m.patchCABundle(ctx, caBundle(secret)); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("the webhook certificate in Secret %s/%s: %w", m.Namespace, m.SecretName, err)
	}
	m.current.Store(&pair)
	return nil
}

// renew returns s with a fresh CA and/or certificate where they are missing, unreadable, for
// other names, or past two thirds of their validity; changed says whether anything was renewed.
func (m *CertManager) renew(s *corev1.Secret) (*corev1.Secret, bool, error) {
	caValidity, certValidity := m.validity()
	now := time.Now()
	due := func(c *x509.Certificate, validity time.Duration) bool {
		return c == nil || now.After(c.NotAfter.Add(-validity/3))
	}
	ca, err := pki.ParseAuthority(s.Data[secretCACert], s.Data[secretCAKey])
	if err != nil {
		ca = nil
	}
	var leaf *x509.Certificate
	if c, err := pki.ParseCert(s.Data[corev1.TLSCertKey]); err == nil && ca != nil && c.CheckSignatureFrom(ca.Cert) == nil &&
		slices.Equal(c.DNSNames, m.Hosts()) {
		if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err == nil {
			leaf = c
		}
	}
	var caCert *x509.Certificate
	if ca != nil {
		caCert = ca.Cert
	}
	if !due(caCert, caValidity) && !due(leaf, certValidity) {
		return s, false, nil
	}
	out := s.DeepCopy()
	if out.Data == nil {
		out.Data = map[string][]byte{}
	}
	if due(caCert, caValidity) {
		if ca != nil && now.Before(ca.Cert.NotAfter) {
			out.Data[secretPreviousCA] = ca.CertPEM // still trusted while connections move over
		} else {
			delete(out.Data, secretPreviousCA)
		}
		if ca, err = pki.NewAuthority("drplan-webhook-ca", caValidity); err != nil {
			return nil, false, err
		}
		out.Data[secretCACert], out.Data[secretCAKey] = ca.CertPEM, ca.KeyPEM
	}
	certPEM, keyPEM, err := ca.ServingCert(m.Hosts(), certValidity)
	if err != nil {
		return nil, false, err
	}
	out.Data[corev1.TLSCertKey], out.Data[corev1.TLSPrivateKeyKey] = certPEM, keyPEM
	return out, true, nil
}

// caBundle is the CA in use and, after a rotation, the previous one while it is still valid.
func caBundle(s *corev1.Secret) []byte {
	bundle := bytes.Clone(s.Data[secretCACert])
	if prev, err := pki.ParseCert(s.Data[secretPreviousCA]); err == nil && time.Now().Before(prev.NotAfter) {
		bundle = append(bundle, s.Data[secretPreviousCA]...)
	}
	return bundle
}

// mergeBundles is want's certificates followed by the ones of have that are still valid and not
// in want.
func mergeBundles(have, want []byte) []byte {
	out := bytes.Clone(want)
	now := time.Now()
	for rest := have; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || now.After(cert.NotAfter) {
			continue
		}
		encoded := pem.EncodeToMemory(block)
		if !bytes.Contains(out, encoded) {
			out = append(out, encoded...)
		}
	}
}

// patchCABundle sets bundle on every webhook that calls our Service in the validating and the
// mutating configuration named WebhookConfigName.
func (m *CertManager) patchCABundle(ctx context.Context, bundle []byte) error {
	ar := m.Client.AdmissionregistrationV1()
	validating, err := patchBundle(ctx, m, "ValidatingWebhookConfiguration", ar.ValidatingWebhookConfigurations(), bundle,
		func(c *admissionregistrationv1.ValidatingWebhookConfiguration) (hooks []namedClient) {
			for _, w := range c.Webhooks {
				hooks = append(hooks, namedClient{w.Name, w.ClientConfig})
			}
			return hooks
		})
	if err != nil {
		return err
	}
	mutating, err := patchBundle(ctx, m, "MutatingWebhookConfiguration", ar.MutatingWebhookConfigurations(), bundle,
		func(c *admissionregistrationv1.MutatingWebhookConfiguration) (hooks []namedClient) {
			for _, w := range c.Webhooks {
				hooks = append(hooks, namedClient{w.Name, w.ClientConfig})
			}
			return hooks
		})
	if err != nil {
		return err
	}
	if !validating || !mutating {
		// Not installed yet (or removed for a while): nothing calls that webhook, so nothing
		// needs to trust it. Once it exists the watch brings us back here.
		klog.FromContext(ctx).Info("A webhook configuration does not exist; its caBundle is set once it does (the API server does not call that webhook meanwhile)",
			"name", m.WebhookConfigName, "validating", validating, "mutating", mutating)
	}
	return nil
}

// namedClient is a webhook of a configuration: its name and where it is called.
type namedClient struct {
	name   string
	client admissionregistrationv1.WebhookClientConfig
}

// configPatcher is the typed client of one kind of webhook configuration.
type configPatcher[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// patchBundle adds bundle to the caBundle of the webhooks of one configuration that call our
// Service, and reports whether the configuration exists.
func patchBundle[T any](ctx context.Context, m *CertManager, kind string, configs configPatcher[T], bundle []byte, webhooks func(T) []namedClient) (bool, error) {
	cfg, err := configs.Get(ctx, m.WebhookConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s %s: %w", kind, m.WebhookConfigName, err)
	}
	var ops []map[string]any
	matched := false
	for i, w := range webhooks(cfg) {
		svc := w.client.Service
		if svc == nil || svc.Namespace != m.Namespace || svc.Name != m.ServiceName {
			continue
		}
		matched = true
		// Add, never drop, a CA that is still valid: a replica that read the Secret before
		// another rotated it must not take the new CA out of the bundle.
		merged := mergeBundles(w.client.CABundle, bundle)
		if bytes.Equal(w.client.CABundle, merged) {
			continue
		}
		ops = append(ops,
			map[string]any{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", i), "value": w.name},
			map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), "value": merged})
	}
	if !matched {
		return true, fmt.Errorf("%s %s has no webhook calling Service %s/%s: the API server would not trust the certificate served",
			kind, m.WebhookConfigName, m.Namespace, m.ServiceName)
	}
	if len(ops) == 0 {
		return true, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return true, err
	}
	if _, err := configs.Patch(ctx, m.WebhookConfigName, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return true, fmt.Errorf("set the CA bundle of %s %s: %w", kind, m.WebhookConfigName, err)
	}
	return true, nil
}
