package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// self is who this process's API requests are authenticated as: the webhooks tell the
// controller's own writes by it.
type self struct {
	Username string
	// UID is the UID the API server gives the user (a ServiceAccount's), when SelfSubjectReview
	// told one; "" otherwise, and then the name alone tells the controller.
	UID string
}

// selfUser asks the API server who we are (SelfSubjectReview, Kubernetes 1.27 and later); before
// that, it is the subject of the ServiceAccount token we present, without a UID.
func selfUser(ctx context.Context, kube kubernetes.Interface, cfg *rest.Config) (self, error) {
	r, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil {
		return nonEmpty(r.Status.UserInfo.Username, r.Status.UserInfo.UID)
	}
	if !apierrors.IsNotFound(err) {
		return self{}, fmt.Errorf("asking the API server who this controller is (SelfSubjectReview): %w", err)
	}
	rb, err := kube.AuthenticationV1beta1().SelfSubjectReviews().Create(ctx, &authenticationv1beta1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil {
		return nonEmpty(rb.Status.UserInfo.Username, rb.Status.UserInfo.UID)
	}
	if !apierrors.IsNotFound(err) {
		return self{}, fmt.Errorf("asking the API server who this controller is (SelfSubjectReview v1beta1): %w", err)
	}
	name, terr := tokenSubject(cfg)
	if terr != nil {
		return self{}, fmt.Errorf("cannot tell which user this controller is: the API server serves no SelfSubjectReview (Kubernetes 1.27+), and %w", terr)
	}
	return self{Username: name}, nil
}

func nonEmpty(name, uid string) (self, error) {
	if name == "" {
		return self{}, errors.New("the API server says this controller has no user name")
	}
	return self{Username: name, UID: uid}, nil
}

// tokenSubject is the user a ServiceAccount token authenticates as: its "sub" claim,
// system:serviceaccount:<namespace>:<name>. The token is our own credential, read from the
// client configuration; nothing a user wrote.
func tokenSubject(cfg *rest.Config) (string, error) {
	token := cfg.BearerToken
	if token == "" && cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return "", fmt.Errorf("reading the token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("the controller's credentials are not a ServiceAccount token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("the controller's token does not decode: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || !strings.HasPrefix(claims.Sub, "system:serviceaccount:") {
		return "", errors.New("the controller's credentials are not a ServiceAccount token")
	}
	return claims.Sub, nil
}
