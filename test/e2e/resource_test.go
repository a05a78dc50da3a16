package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestKubernetesResourceActions runs Create, Apply, Patch and Delete of ConfigMaps and Secrets,
// with a password parameter read from a Secret that must never show in status or events.
func TestKubernetesResourceActions(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "resources")
	kube := env.Kube.CoreV1()
	_, err := kube.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dr-source"},
		StringData: map[string]string{"password": "hunter2-very-secret"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, name := range []string{"app-config", "old-config"} {
		_, err = kube.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string]string{"mode": "normal", "keep": "yes"}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: resources, namespace: %[1]s}
spec:
  parameters:
  - {name: namespace, required: true}
  - {name: targetRegion, default: dr-region}
  - {name: drPassword, required: true}
  actions:
  - name: create-dr-config
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: "dr-config-{{ .planName }}"
          namespace: "{{ .params.namespace }}"
        data:
          dr-region: "{{ .params.targetRegion }}"
  - name: create-dr-secret
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: v1
        kind: Secret
        metadata:
          name: dr-credentials
          namespace: "{{ .params.namespace }}"
        stringData:
          password: "{{ .params.drPassword }}"
  - name: apply-settings
    type: KubernetesResource
    resource:
      operation: Apply
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: app-settings}
        data: {region: "{{ .params.targetRegion }}"}
    rollback:
      type: KubernetesResource
      resource:
        operation: Delete
        manifest: |
          apiVersion: v1
          kind: ConfigMap
          metadata: {name: app-settings}
  - name: update-existing-config
    type: KubernetesResource
    resource:
      operation: Patch
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: app-config, namespace: "{{ .params.namespace }}"}
        data: {mode: dr}
    rollback:
      type: KubernetesResource
      resource:
        operation: Patch
        manifest: |
          apiVersion: v1
          kind: ConfigMap
          metadata: {name: app-config, namespace: "{{ .params.namespace }}"}
          data: {mode: normal}
  - name: delete-old
    type: KubernetesResource
    resource:
      operation: Delete
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: old-config}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: res-plan, namespace: %[1]s}
spec:
  globalParams:
  - {name: namespace, value: %[1]s}
  - name: drPassword
    valueFrom: {secretKeyRef: {name: dr-source, key: password}}
  workflowRef: {name: resources}
`, ns))
	waitPlanPhase(t, ns, "res-plan", drv1.PlanReady)
	createExecution(t, ns, "run", "res-plan")
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)

	cm, err := kube.ConfigMaps(ns).Get(ctx, "dr-config-res-plan", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "dr-region", cm.Data["dr-region"])
	assert.Equal(t, "res-plan", cm.Labels[drv1.LabelPlan])
	assert.Equal(t, "run", cm.Labels[drv1.LabelExecution])
	secret, err := kube.Secrets(ns).Get(ctx, "dr-credentials", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "hunter2-very-secret", string(secret.Data["password"]))
	settings, err := kube.ConfigMaps(ns).Get(ctx, "app-settings", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "dr-region", settings.Data["region"])
	patched, err := kube.ConfigMaps(ns).Get(ctx, "app-config", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"mode": "dr", "keep": "yes"}, patched.Data)
	_, err = kube.ConfigMaps(ns).Get(ctx, "old-config", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))

	require.Len(t, e.Status.Outputs, 5)
	ref := e.Status.Outputs[0].ResourceRef
	require.NotNil(t, ref)
	assert.Equal(t, drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: "dr-config-res-plan", Namespace: ns, UID: string(cm.UID)}, *ref)
	assert.Equal(t, "(redacted)", e.Status.ResolvedParams["drPassword"])

	raw, err := json.Marshal(e)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "hunter2-very-secret", "a Secret's value never shows in the execution")
	events := kubectl(t, "get", "events", "-n", ns, "-o", "json")
	assert.NotContains(t, events, "hunter2-very-secret", "nor in events")
}

// TestServiceAccountBoundsThePlan runs a plan as a ServiceAccount that may create ConfigMaps but
// not Secrets: the Secret action fails Forbidden, with the reason in its message.
func TestServiceAccountBoundsThePlan(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "rights")
	_, err := env.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dr-runner"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create"}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dr-runner"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmaps"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "dr-runner", Namespace: ns}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - name: create-config
    type: KubernetesResource
    resource:
      operation: Create
      manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: allowed}\n"
  - name: create-secret
    type: KubernetesResource
    resource:
      operation: Create
      manifest: "apiVersion: v1\nkind: Secret\nmetadata: {name: not-allowed}\n"
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  serviceAccountName: dr-runner
  workflowRef: {name: wf}
`, ns))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Equal(t, drv1.StepSucceeded, e.Status.ActionStatuses[0].Phase)
	msg := e.Status.ActionStatuses[1].Message
	assert.Contains(t, msg, "forbidden")
	assert.Contains(t, msg, fmt.Sprintf(`User "system:serviceaccount:%s:dr-runner" cannot create resource "secrets"`, ns))
	assert.True(t, strings.HasPrefix(e.Status.Message, "Action 'create-secret' failed: "), e.Status.Message)
}
