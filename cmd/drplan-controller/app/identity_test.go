package app

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	clienttesting "k8s.io/client-go/testing"
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

// TestSelfUserLearnsItsUID: with SelfSubjectReview the controller learns its name and UID (the
// webhooks then require both); without it (1.25, 1.26) the token's subject alone, no UID.
func TestSelfUserLearnsItsUID(t *testing.T) {
	kube := fake.NewSimpleClientset()
	kube.PrependReactor("create", "selfsubjectreviews", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetResource().Version != "v1" {
			return false, nil, nil
		}
		return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: authenticationv1.UserInfo{
			Username: "system:serviceaccount:drplan-system:drplan-controller", UID: "sa-uid"}}}, nil
	})
	me, err := selfUser(context.Background(), kube, &rest.Config{})
	require.NoError(t, err)
	assert.Equal(t, self{Username: "system:serviceaccount:drplan-system:drplan-controller", UID: "sa-uid"}, me)

	old := fake.NewSimpleClientset()
	old.PrependReactor("create", "selfsubjectreviews", func(a clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "")
	})
	enc := base64.RawURLEncoding.EncodeToString
	token := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"system:serviceaccount:drplan-system:drplan-controller"}`)) + ".c2ln"
	me, err = selfUser(context.Background(), old, &rest.Config{BearerToken: token})
	require.NoError(t, err)
	assert.Equal(t, self{Username: "system:serviceaccount:drplan-system:drplan-controller"}, me, "the name alone decides then")
}
