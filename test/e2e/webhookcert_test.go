package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/admission/pki"
)

// TestWebhookCertificateManager runs the in-cluster certificate manager against the real API
// server: it issues a CA and a certificate for the Service into a Secret, puts the CA into the
// webhook configuration's caBundle, leaves them alone while they are fresh, renews the
// certificate and then the CA as they near expiry (trusting the previous CA meanwhile), and two
// replicas racing end up serving the same certificate.
func TestWebhookCertificateManager(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "webhook-cert")
	// Configurations that call the Service, registered like the chart does (no caBundle); their
	// rules match nothing this suite creates.
	client := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "drplan-webhook"}}
	cfg := admission.WebhookConfiguration("drplan-cert-test", client, env.ControllerUser)
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].Rules[0].APIGroups = []string{"example.invalid"}
	}
	mcfg := admission.MutatingWebhookConfiguration(cfg.Name, client, env.ControllerUser)
	mcfg.Webhooks[0].Rules[0].APIGroups = []string{"example.invalid"}
	require.NoError(t, admission.Register(ctx, env.Kube, cfg, mcfg))
	t.Cleanup(func() { _ = admission.Unregister(ctx, env.Kube, cfg.Name) })

	manager := func() *admission.CertManager {
		return &admission.CertManager{Client: env.Kube, Namespace: ns, SecretName: "drplan-webhook-tls", ServiceName: "drplan-webhook",
			WebhookConfigName: cfg.Name, CAValidity: 9 * time.Second, CertValidity: 6 * time.Second}
	}
	secret := func() *corev1.Secret {
		s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "drplan-webhook-tls", metav1.GetOptions{})
		require.NoError(t, err)
		return s
	}
	mutatingBundle := func() []byte {
		m, err := env.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, cfg.Name, metav1.GetOptions{})
		require.NoError(t, err)
		return m.Webhooks[0].ClientConfig.CABundle
	}
	// The bundle of the validating configuration; once Ensure returns, the mutating one's is the
	// same.
	caBundle := func() []byte {
		c, err := env.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, cfg.Name, metav1.GetOptions{})
		require.NoError(t, err)
		return c.Webhooks[0].ClientConfig.CABundle
	}
	sameBundles := func() {
		assert.Equal(t, string(caBundle()), string(mutatingBundle()), "both configurations trust the same CAs")
	}
	served := func(m *admission.CertManager) *x509.Certificate {
		c, err := m.GetCertificate(nil)
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf
	}
	verifies := func(leaf *x509.Certificate, bundle []byte) bool {
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(bundle))
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "drplan-webhook." + ns + ".svc"})
		return err == nil
	}

	// Two replicas start together on a fresh namespace: one issues, both serve that one.
	a, b := manager(), manager()
	var wg sync.WaitGroup
	for _, m := range []*admission.CertManager{a, b} {
		wg.Go(func() { assert.NoError(t, m.Ensure(ctx)) })
	}
	wg.Wait()
	first := served(a)
	assert.Equal(t, first.SerialNumber, served(b).SerialNumber, "both replicas serve the one certificate")
	s := secret()
	assert.Equal(t, s.Data["ca.crt"], caBundle(), "the configuration trusts the CA")
	sameBundles()
	assert.True(t, verifies(first, caBundle()), "the served certificate verifies for the Service's name against the bundle")
	assert.ElementsMatch(t, []string{"drplan-webhook." + ns + ".svc", "drplan-webhook." + ns, "drplan-webhook", "drplan-webhook." + ns + ".svc.cluster.local"}, first.DNSNames)

	// Fresh: nothing is rewritten.
	require.NoError(t, a.Ensure(ctx))
	assert.Equal(t, s.ResourceVersion, secret().ResourceVersion)

	// Past two thirds of the certificate's life: a new certificate from the same CA.
	time.Sleep(time.Until(first.NotAfter.Add(-1500 * time.Millisecond)))
	require.NoError(t, a.Ensure(ctx))
	second := served(a)
	assert.NotEqual(t, first.SerialNumber, second.SerialNumber, "renewed")
	assert.Equal(t, s.Data["ca.crt"], secret().Data["ca.crt"], "same CA")
	assert.True(t, verifies(second, caBundle()))
	sameBundles()
	require.NoError(t, b.Ensure(ctx))
	assert.Equal(t, second.SerialNumber, served(b).SerialNumber, "the other replica picks it up")

	// Past two thirds of the CA's life: a new CA, and the bundle trusts both while the old one
	// is valid, so connections made with either verify.
	ca, err := pki.ParseCert(s.Data["ca.crt"])
	require.NoError(t, err)
	time.Sleep(time.Until(ca.NotAfter.Add(-2500 * time.Millisecond)))
	require.NoError(t, a.Ensure(ctx))
	rotated := secret()
	assert.NotEqual(t, s.Data["ca.crt"], rotated.Data["ca.crt"], "a new CA")
	assert.Equal(t, s.Data["ca.crt"], rotated.Data["ca-previous.crt"])
	bundle := caBundle()
	assert.True(t, bytes.Contains(bundle, rotated.Data["ca.crt"]) && bytes.Contains(bundle, s.Data["ca.crt"]), "both CAs trusted")
	third := served(a)
	assert.True(t, verifies(third, bundle))
	assert.True(t, verifies(second, bundle), "a connection still made with the old certificate verifies")
	sameBundles()

	// Started, a manager watches the configurations: re-created without their caBundle (a
	// re-applied manifest), they trust the CA again at once, not at the next hourly check; the
	// mutating one alone too.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	require.NoError(t, a.Start(runCtx, time.Hour))
	require.NoError(t, admission.Unregister(ctx, env.Kube, cfg.Name))
	require.NoError(t, admission.Register(ctx, env.Kube, cfg, mcfg))
	eventually(t, "the caBundle to be put back", func() (bool, string) {
		return bytes.Contains(caBundle(), secret().Data["ca.crt"]), fmt.Sprintf("%d bytes", len(caBundle()))
	})
	require.NoError(t, admission.UnregisterMutating(ctx, env.Kube, cfg.Name))
	require.NoError(t, admission.Register(ctx, env.Kube, nil, mcfg))
	eventually(t, "the mutating configuration's caBundle to be put back", func() (bool, string) {
		return bytes.Contains(mutatingBundle(), secret().Data["ca.crt"]), fmt.Sprintf("%d bytes", len(mutatingBundle()))
	})
}
