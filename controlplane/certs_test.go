package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"

	"github.com/bkbcs/drplan-controller/admission/pki"
)

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWritePKI(t *testing.T) {
	files := newPKIFiles(t.TempDir())
	ca, err := writePKI(files)
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reloaded, err := pki.ParseAuthority(read(files.caCert), read(files.caKey))
	if err != nil {
		t.Fatalf("reload CA from files: %v", err)
	}
	if !reloaded.Cert.Equal(ca.Cert) || !reloaded.Cert.IsCA {
		t.Error("CA file does not hold the CA certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	tests := []struct {
		name          string
		cert, key     string
		usage         x509.ExtKeyUsage
		wantCN        string
		wantOrg       []string
		wantIPForHost string
	}{
		{"apiserver serving", files.apiServerCert, files.apiServerKey, x509.ExtKeyUsageServerAuth, "127.0.0.1", nil, "127.0.0.1"},
		{"admin client", files.adminCert, files.adminKey, x509.ExtKeyUsageClientAuth, "drplan-admin", []string{"system:masters"}, ""},
		{"controller-manager client", files.controllerCert, files.controllerKey, x509.ExtKeyUsageClientAuth, "system:kube-controller-manager", []string{"system:masters"}, ""},
		{"front-proxy client", files.frontProxyCert, files.frontProxyKey, x509.ExtKeyUsageClientAuth, "front-proxy-client", nil, ""},
		{"controller-manager serving", files.controllerServing, files.controllerSKey, x509.ExtKeyUsageServerAuth, "127.0.0.1", nil, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tls.X509KeyPair(read(tt.cert), read(tt.key)); err != nil {
				t.Fatalf("cert and key do not pair: %v", err)
			}
			c := parseCert(t, read(tt.cert))
			if c.Subject.CommonName != tt.wantCN || !slices.Equal(c.Subject.Organization, tt.wantOrg) {
				t.Errorf("subject = %v, want CN=%s O=%v", c.Subject, tt.wantCN, tt.wantOrg)
			}
			opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.usage}, DNSName: tt.wantIPForHost}
			if _, err := c.Verify(opts); err != nil {
				t.Errorf("verify against CA: %v", err)
			}
		})
	}

	b, _ := pem.Decode(read(files.serviceAccountPub))
	if b == nil || b.Type != "PUBLIC KEY" {
		t.Fatal("service-account public key: no PUBLIC KEY block")
	}
	if _, err := x509.ParsePKIXPublicKey(b.Bytes); err != nil {
		t.Errorf("service-account public key: %v", err)
	}
	if fi, err := os.Stat(files.caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}
