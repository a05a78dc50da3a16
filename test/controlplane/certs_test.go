package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"
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

func TestServingCert(t *testing.T) {
	ca, err := newAuthority("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	other, err := newAuthority("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.cert)

	tests := []struct {
		name      string
		hosts     []string
		wantIPs   []string
		wantDNS   []string
		verifyFor []string
	}{
		{"apiserver", apiServerHosts, []string{"127.0.0.1", "::1", "10.0.0.1"},
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			[]string{"127.0.0.1", "localhost", "kubernetes.default.svc"}},
		{"webhook", []string{"127.0.0.1"}, []string{"127.0.0.1"}, nil, []string{"127.0.0.1"}},
		{"service name", []string{"drplan-webhook.drplan-system.svc"}, nil, []string{"drplan-webhook.drplan-system.svc"}, []string{"drplan-webhook.drplan-system.svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.servingCert(tt.hosts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("cert and key do not pair: %v", err)
			}
			c := parseCert(t, certPEM)
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IP SANs = %v, want %v", ips, tt.wantIPs)
			}
			if !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("DNS SANs = %v, want %v", c.DNSNames, tt.wantDNS)
			}
			for _, host := range tt.verifyFor {
				opts := x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
				if _, err := c.Verify(opts); err != nil {
					t.Errorf("verify for %s: %v", host, err)
				}
				opts.Roots = otherRoots
				if _, err := c.Verify(opts); err == nil {
					t.Errorf("verify for %s against another CA: want an error", host)
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
				t.Error("verify for a host not in the SANs: want an error")
			}
		})
	}
	if _, _, err := ca.servingCert(nil); err == nil {
		t.Error("servingCert(nil): want an error")
	}
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
	reloaded, err := parseAuthority(read(files.caCert), read(files.caKey))
	if err != nil {
		t.Fatalf("reload CA from files: %v", err)
	}
	if !reloaded.cert.Equal(ca.cert) || !reloaded.cert.IsCA {
		t.Error("CA file does not hold the CA certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

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
