package admission_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bkbcs/drplan-controller/admission"
)

// TestStatusWritesOfTheControllerSkipTheWebhook: the status subresources have their own entry,
// whose matchCondition leaves the controller's user out (a ServiceAccount only with a UID); the
// other entry is unchanged and has none.
func TestStatusWritesOfTheControllerSkipTheWebhook(t *testing.T) {
	url := "https://127.0.0.1:1"
	client := admissionregistrationv1.WebhookClientConfig{URL: &url}
	cfg := admission.WebhookConfiguration("x", client, "system:serviceaccount:ns:drplan-controller")
	if assert.Len(t, cfg.Webhooks, 2) {
		assert.Equal(t, admission.WebhookName, cfg.Webhooks[0].Name)
		assert.Empty(t, cfg.Webhooks[0].MatchConditions)
		assert.Equal(t, []string{"drworkflows", "drplans", "drplanexecutions"}, cfg.Webhooks[0].Rules[0].Resources)
		assert.Equal(t, admission.StatusWebhookName, cfg.Webhooks[1].Name)
		assert.Equal(t, []string{"drworkflows/status", "drplans/status", "drplanexecutions/status"}, cfg.Webhooks[1].Rules[0].Resources)
		assert.Equal(t, []admissionregistrationv1.MatchCondition{{Name: "not-the-controller",
			Expression: `!(request.userInfo.username == "system:serviceaccount:ns:drplan-controller" && request.userInfo.uid != '')`}},
			cfg.Webhooks[1].MatchConditions)
		assert.Equal(t, url+admission.Path, *cfg.Webhooks[1].ClientConfig.URL)
	}
	assert.Equal(t, `!(request.userInfo.username == "drplan-controller")`, admission.ControllerMatchCondition("drplan-controller").Expression,
		"a user without a UID: the name decides")
	assert.Empty(t, admission.WebhookConfiguration("x", client, "").Webhooks[1].MatchConditions, "no user: every status write is sent")
}
