package app

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
)

// TestTokenSubject: before SelfSubjectReview (Kubernetes 1.25, 1.26) the controller knows itself
// by its ServiceAccount token's subject, read from its own configuration.
func TestTokenSubject(t *testing.T) {
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
	}
	file := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(file, []byte(jwt(`{"sub":"system:serviceaccount:drplan-system:drplan-controller"}`)+"\n"), 0o600))
	got, err := tokenSubject(&rest.Config{BearerTokenFile: file})
	require.NoError(t, err)
	assert.Equal(t, "system:serviceaccount:drplan-system:drplan-controller", got)

	for name, cfg := range map[string]*rest.Config{
		"a client certificate":      {TLSClientConfig: rest.TLSClientConfig{CertData: []byte("x")}},
		"another subject":           {BearerToken: jwt(`{"sub":"alice"}`)},
		"a token that is no JWT":    {BearerToken: "abc"},
		"a payload that is no JSON": {BearerToken: "a.bm90IGpzb24.c"},
	} {
		_, err := tokenSubject(cfg)
		assert.ErrorContains(t, err, "not a ServiceAccount token", name)
	}
}
