package actions

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/controlplane"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// resourceWaitLong bounds a wait on the API server (RBAC and discovery catching up); it only
// matters when the test is broken.
const resourceWaitLong = 30 * time.Second

// The execution every request of these tests runs for, unless a test says otherwise.
const (
	testPlan      = "payments"
	testExecution = "payments-failover-1"
	testExecUID   = types.UID("6f1d2c9e-7a41-4c55-9d0e-5b7e1f3a2c01")
)

func resourceRequest(namespace string, op drv1.ResourceOperation, manifest string) Request {
	return Request{
		Body: drv1.ActionBody{
			Type:     drv1.ActionTypeKubernetesResource,
			Resource: &drv1.ResourceAction{Operation: op, Manifest: manifest},
		},
		Execution: ExecutionRef{Namespace: namespace, Name: testExecution, UID: testExecUID, PlanName: testPlan},
		ActionID:  "prepare/0/create-dr-config",
	}
}

// resourceEnv is one real control plane shared by the subtests of TestResourceRunner, each of
// which works in a namespace of its own.
type resourceEnv struct {
	config  *rest.Config
	kube    kubernetes.Interface
	runner  *ResourceRunner
	nsCount atomic.Int32
}

func startResourceEnv(t *testing.T) *resourceEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a cold build takes minutes
	defer cancel()
	began := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{Progress: os.Stderr})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, cp.Stop()) })
	t.Logf("control plane started in %s", time.Since(began).Round(time.Millisecond))

	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	require.NoError(t, err)
	f, err := NewClientFactory(cp.RESTConfig)
	require.NoError(t, err)
	return &resourceEnv{config: cp.RESTConfig, kube: kube, runner: NewResourceRunner(f)}
}

// namespace creates a fresh namespace for one subtest.
func (e *resourceEnv) namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("dr-test-%d", e.nsCount.Add(1))
	_, err := e.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	return name
}

func (e *resourceEnv) configMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return cm
}

func requireRunLabels(t *testing.T, labels map[string]string) {
	t.Helper()
	assert.Equal(t, testPlan, labels[drv1.LabelPlan], "plan label")
	assert.Equal(t, testExecution, labels[drv1.LabelExecution], "execution label")
}

const drConfigManifest = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: "dr-config-payments"
data:
  dr-mode: "active"
  dr-region: "ap-shanghai"
`

// TestResourceRunner runs the KubernetesResource runner against a real kube-apiserver (with
// RBAC). One control plane serves every subtest; there is no TestMain in this package.
func TestResourceRunner(t *testing.T) {
	env := startResourceEnv(t)

	t.Run("CreateConfigMap", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		res, err := env.runner.Run(t.Context(), resourceRequest(ns, drv1.OperationCreate, drConfigManifest))
		require.NoError(t, err)

		cm := env.configMap(t, ns, "dr-config-payments")
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments created", res.Message)
		assert.Equal(t, &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: "dr-config-payments", Namespace: ns, UID: string(cm.UID)}, res.ResourceRef)
		assert.Zero(t, res.Retries)
		assert.Equal(t, map[string]string{"dr-mode": "active", "dr-region": "ap-shanghai"}, cm.Data)
		requireRunLabels(t, cm.Labels)
	})

	t.Run("CreateSecret", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		manifest := `
apiVersion: v1
kind: Secret
metadata:
  name: dr-credentials
  namespace: ` + ns + `
  labels:
    team: dba
type: Opaque
stringData:
  username: "dr-admin"
  password: "s3cr3t"
`
		res, err := env.runner.Run(t.Context(), resourceRequest("elsewhere", drv1.OperationCreate, manifest))
		require.NoError(t, err, "the manifest's namespace wins over the execution's")

		secret, err := env.kube.CoreV1().Secrets(ns).Get(t.Context(), "dr-credentials", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Secret "+ns+"/dr-credentials created", res.Message)
		assert.Equal(t, string(secret.UID), res.ResourceRef.UID)
		assert.Equal(t, "s3cr3t", string(secret.Data["password"]))
		assert.Equal(t, "dba", secret.Labels["team"], "labels of the manifest are kept")
		requireRunLabels(t, secret.Labels)
		assert.NotContains(t, res.Message, "s3cr3t")
	})

	t.Run("CreateRetriedAfterSuccess", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		req := resourceRequest(ns, drv1.OperationCreate, drConfigManifest)
		first, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		// The controller crashed before recording the result: the action runs again.
		again, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments created (by an earlier attempt of this action)", again.Message)
		assert.Equal(t, first.ResourceRef, again.ResourceRef)

		list, err := env.kube.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{LabelSelector: drv1.LabelExecution + "=" + testExecution})
		require.NoError(t, err)
		assert.Len(t, list.Items, 1)
	})

	t.Run("CreateCollidesWithForeignObject", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		_, err := env.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "dr-config-payments"},
			Data:       map[string]string{"owner": "someone else"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		_, err = env.runner.Run(t.Context(), resourceRequest(ns, drv1.OperationCreate, drConfigManifest))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "ConfigMap "+ns+"/dr-config-payments already exists and was not created by this execution")
		assert.Equal(t, map[string]string{"owner": "someone else"}, env.configMap(t, ns, "dr-config-payments").Data, "left alone")

		// An earlier execution of the same plan is foreign too.
		req := resourceRequest(ns, drv1.OperationCreate, strings.Replace(drConfigManifest, "dr-config-payments", "dr-config-2", 1))
		_, err = env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		req.Execution.Name, req.Execution.UID = "payments-failover-2", "another-uid"
		_, err = env.runner.Run(t.Context(), req)
		require.ErrorContains(t, err, "ConfigMap "+ns+"/dr-config-2 already exists and was not created by this execution")
	})

	t.Run("GenerateNameIsDeterministic", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		manifest := `
apiVersion: v1
kind: ConfigMap
metadata:
  generateName: dr-snapshot-
data: {at: "now"}
`
		req := resourceRequest(ns, drv1.OperationCreate, manifest)
		first, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		second, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)

		name := first.ResourceRef.Name
		assert.Equal(t, DeterministicName("dr-snapshot-", testExecUID, req.ActionID), name)
		assert.Equal(t, first.ResourceRef, second.ResourceRef, "the retry finds the same object")
		assert.Equal(t, "ConfigMap "+ns+"/"+name+" created", first.Message)

		// Another action of the same execution gets its own object.
		req.ActionID = "prepare/0/another-action"
		other, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		assert.NotEqual(t, name, other.ResourceRef.Name)

		list, err := env.kube.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{LabelSelector: drv1.LabelPlan + "=" + testPlan})
		require.NoError(t, err)
		assert.Len(t, list.Items, 2)
	})

	t.Run("ApplyIsIdempotent", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		// Someone else (kubectl) owns dr-mode already: Force takes it over.
		_, err := env.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "dr-config-payments"},
			Data:       map[string]string{"dr-mode": "standby", "untouched": "yes"},
		}, metav1.CreateOptions{FieldManager: "kubectl-edit"})
		require.NoError(t, err)

		req := resourceRequest(ns, drv1.OperationApply, drConfigManifest)
		first, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		afterFirst := env.configMap(t, ns, "dr-config-payments")
		second, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		afterSecond := env.configMap(t, ns, "dr-config-payments")

		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments applied", second.Message)
		assert.Equal(t, first.ResourceRef, second.ResourceRef)
		assert.Equal(t, string(afterFirst.UID), second.ResourceRef.UID)
		assert.Equal(t, afterFirst.ResourceVersion, afterSecond.ResourceVersion, "a second identical apply changes nothing")
		assert.Equal(t, map[string]string{"dr-mode": "active", "dr-region": "ap-shanghai", "untouched": "yes"}, afterSecond.Data)
		requireRunLabels(t, afterSecond.Labels)
		var managers []string
		for _, m := range afterSecond.ManagedFields {
			if m.Operation == metav1.ManagedFieldsOperationApply {
				managers = append(managers, m.Manager)
			}
		}
		assert.Equal(t, []string{"drplan-controller"}, managers)
	})

	t.Run("PatchMergesData", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		_, err := env.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "app-config", Labels: map[string]string{"team": "payments"}},
			Data:       map[string]string{"mode": "normal", "pool": "20"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		manifest := `
apiVersion: v1
kind: ConfigMap
metadata:
  name: "app-config"
  labels:
    phase: failover
data:
  mode: "dr"
  region: "ap-shanghai"
`
		res, err := env.runner.Run(t.Context(), resourceRequest(ns, drv1.OperationPatch, manifest))
		require.NoError(t, err)
		cm := env.configMap(t, ns, "app-config")
		assert.Equal(t, "ConfigMap "+ns+"/app-config patched", res.Message)
		assert.Equal(t, string(cm.UID), res.ResourceRef.UID)
		assert.Equal(t, map[string]string{"mode": "dr", "pool": "20", "region": "ap-shanghai"}, cm.Data)
		assert.Equal(t, map[string]string{"team": "payments", "phase": "failover"}, cm.Labels, "a patch merges labels and adds no run labels")
	})

	t.Run("PatchOfMissingObjectFails", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config}\ndata: {mode: dr}\n"
		_, err := env.runner.Run(t.Context(), resourceRequest(ns, drv1.OperationPatch, manifest))
		require.Error(t, err)
		assert.True(t, apierrors.IsNotFound(err), "the API error is kept: %v", err)
		assert.Contains(t, err.Error(), "patch ConfigMap "+ns+"/app-config")
		assert.Contains(t, err.Error(), "must exist")
		_, err = env.kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "app-config", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "nothing was created")
	})

	t.Run("DeleteThenDeleteAgain", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		cm, err := env.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dr-config-payments"}}, metav1.CreateOptions{})
		require.NoError(t, err)

		req := resourceRequest(ns, drv1.OperationDelete, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dr-config-payments\n")
		res, err := env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments deleted", res.Message)
		assert.Equal(t, &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: "dr-config-payments", Namespace: ns, UID: string(cm.UID)}, res.ResourceRef)
		_, err = env.kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "dr-config-payments", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "deleted: %v", err)

		res, err = env.runner.Run(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments already gone", res.Message)
		assert.Equal(t, &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: "dr-config-payments", Namespace: ns}, res.ResourceRef)
	})

	t.Run("ClusterScopedNamespace", func(t *testing.T) {
		t.Parallel()
		manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dr-standby-payments\n"
		res, err := env.runner.Run(t.Context(), resourceRequest("drplan-system", drv1.OperationCreate, manifest))
		require.NoError(t, err)
		got, err := env.kube.CoreV1().Namespaces().Get(t.Context(), "dr-standby-payments", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "Namespace dr-standby-payments created", res.Message)
		assert.Equal(t, &drv1.ResourceReference{APIVersion: "v1", Kind: "Namespace", Name: "dr-standby-payments", UID: string(got.UID)}, res.ResourceRef)
		requireRunLabels(t, got.Labels)

		withNamespace := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dr-other\n  namespace: default\n"
		_, err = env.runner.Run(t.Context(), resourceRequest("drplan-system", drv1.OperationCreate, withNamespace))
		require.ErrorContains(t, err, `Namespace dr-other is cluster-scoped: remove metadata.namespace "default"`)
	})

	t.Run("CRDInstalledAfterStart", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		// A runner of its own, whose discovery cache is filled before the CRD exists.
		f, err := NewClientFactory(env.config)
		require.NoError(t, err)
		runner := NewResourceRunner(f)
		_, err = runner.Run(t.Context(), resourceRequest(ns, drv1.OperationCreate, drConfigManifest))
		require.NoError(t, err)
		manifest := `
apiVersion: custom.example.com/v1
kind: BackupPolicy
metadata:
  name: "dr-backup-policy"
spec:
  schedule: "0 */6 * * *"
  retention: 7
`
		req := resourceRequest(ns, drv1.OperationApply, manifest)
		_, err = runner.Run(t.Context(), req)
		require.ErrorContains(t, err, "the API server serves no kind BackupPolicy in custom.example.com/v1 (is its CRD installed?)")

		installBackupPolicyCRD(t, env.config)
		res, err := runner.Run(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "BackupPolicy "+ns+"/dr-backup-policy applied", res.Message)

		dyn, err := dynamic.NewForConfig(env.config)
		require.NoError(t, err)
		got, err := dyn.Resource(schema.GroupVersionResource{Group: "custom.example.com", Version: "v1", Resource: "backuppolicies"}).
			Namespace(ns).Get(t.Context(), "dr-backup-policy", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, string(got.GetUID()), res.ResourceRef.UID)
		assert.Equal(t, map[string]any{"schedule": "0 */6 * * *", "retention": int64(7)}, got.Object["spec"])
		requireRunLabels(t, got.GetLabels())
	})

	t.Run("ImpersonatedServiceAccount", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		grantConfigMapsOnly(t, env.kube, ns, "dr-runner")
		sa := ns + "/dr-runner"

		req := resourceRequest(ns, drv1.OperationCreate, drConfigManifest)
		req.ServiceAccount = sa
		// RBAC reaches the authorizer through an informer: wait until the binding is seen.
		var err error
		deadline := time.Now().Add(resourceWaitLong)
		for {
			if _, err = env.runner.Run(t.Context(), req); err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.NoError(t, err, "the ServiceAccount may create ConfigMaps")

		secret := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dr-credentials\nstringData:\n  password: s3cr3t\n"
		req = resourceRequest(ns, drv1.OperationCreate, secret)
		req.ServiceAccount = sa
		_, err = env.runner.Run(t.Context(), req)
		require.Error(t, err)
		assert.True(t, apierrors.IsForbidden(err), "the API error is kept: %v", err)
		msg := err.Error()
		assert.Contains(t, msg, "create Secret "+ns+"/dr-credentials as ServiceAccount "+sa)
		assert.Contains(t, msg, "forbidden")
		assert.Contains(t, msg, `User "system:serviceaccount:`+ns+`:dr-runner" cannot create resource "secrets"`)

		// The controller's own identity (here cluster-admin) is not affected by the SA's limits.
		req.ServiceAccount = ""
		_, err = env.runner.Run(t.Context(), req)
		require.NoError(t, err)

		req.ServiceAccount = "no-slash"
		_, err = env.runner.Run(t.Context(), req)
		require.ErrorContains(t, err, `serviceAccount "no-slash": want namespace/name`)
	})

	t.Run("DeleteCreated", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		created, err := env.runner.Run(t.Context(), resourceRequest(ns, drv1.OperationCreate, drConfigManifest))
		require.NoError(t, err)
		ref := *created.ResourceRef

		res, err := env.runner.DeleteCreated(t.Context(), "", ref)
		require.NoError(t, err)
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments deleted", res.Message)
		assert.Equal(t, &ref, res.ResourceRef)
		_, err = env.kube.CoreV1().ConfigMaps(ns).Get(t.Context(), ref.Name, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "deleted: %v", err)

		res, err = env.runner.DeleteCreated(t.Context(), "", ref)
		require.NoError(t, err)
		assert.Equal(t, "ConfigMap "+ns+"/dr-config-payments already gone", res.Message)
		assert.Empty(t, res.ResourceRef.UID)

		// A namesake made since (another object, another UID) is left alone.
		namesake, err := env.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		res, err = env.runner.DeleteCreated(t.Context(), "", ref)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("ConfigMap %s/dr-config-payments already gone (the name now belongs to another object, uid %s, left alone)", ns, namesake.UID), res.Message)
		assert.Equal(t, namesake.UID, env.configMap(t, ns, ref.Name).UID)

		ref.UID = ""
		_, err = env.runner.DeleteCreated(t.Context(), "", ref)
		require.ErrorContains(t, err, "has no UID")
	})

	t.Run("RejectsBadManifests", func(t *testing.T) {
		t.Parallel()
		ns := env.namespace(t)
		for _, tc := range []struct {
			name     string
			op       drv1.ResourceOperation
			manifest string
			want     string
		}{
			{"empty", drv1.OperationCreate, "# nothing\n", "resource.manifest: no object"},
			{"two objects", drv1.OperationCreate, drConfigManifest + "---\n" + drConfigManifest, "resource.manifest: holds 2 objects"},
			{"a list", drv1.OperationCreate, "- a\n- b\n", "document 1 is not an object"},
			{"no kind", drv1.OperationCreate, "apiVersion: v1\nmetadata: {name: x}\n", "resource.manifest: the object has no kind"},
			{"no name", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\n", "resource.manifest: the object has no metadata.name"},
			{"metadata not a mapping", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n", "resource.manifest: metadata must be a mapping"},
			{"apiVersion with two slashes", drv1.OperationCreate, "apiVersion: apps/v1/x\nkind: Deployment\nmetadata: {name: x}\n", "resource.manifest: apiVersion: unexpected GroupVersion string: apps/v1/x"},
			{"patch by generateName", drv1.OperationPatch, "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n", "Patch needs metadata.name"},
			{"unknown kind", drv1.OperationCreate, "apiVersion: v1\nkind: Nonsense\nmetadata: {name: x}\n", "serves no kind Nonsense in v1"},
			{"unknown operation", "Replace", drConfigManifest, `unknown operation "Replace"`},
		} {
			_, err := env.runner.Run(t.Context(), resourceRequest(ns, tc.op, tc.manifest))
			assert.ErrorContains(t, err, tc.want, tc.name)
		}
		_, err := env.runner.Run(t.Context(), Request{Body: drv1.ActionBody{Type: drv1.ActionTypeHTTP}})
		assert.ErrorContains(t, err, "want a KubernetesResource action")
	})
}

// grantConfigMapsOnly creates ServiceAccount ns/name bound to a Role that allows ConfigMaps and
// nothing else.
func grantConfigMapsOnly(t *testing.T, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx := t.Context()
	_, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-writer"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"configmaps"},
			Verbs:     []string{"get", "list", "create", "patch", "update", "delete"},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-writer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmap-writer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// installBackupPolicyCRD installs the guide's custom.example.com BackupPolicy and waits until
// discovery serves it.
func installBackupPolicyCRD(t *testing.T, config *rest.Config) {
	t.Helper()
	client, err := apiextensionsclient.NewForConfig(config)
	require.NoError(t, err)
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "backuppolicies.custom.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "custom.example.com",
			Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "backuppolicies", Singular: "backuppolicy", Kind: "BackupPolicy", ListKind: "BackupPolicyList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: &preserve},
					},
				}},
			}},
		},
	}
	_, err = client.ApiextensionsV1().CustomResourceDefinitions().Create(t.Context(), crd, metav1.CreateOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		list, err := client.Discovery().ServerResourcesForGroupVersion("custom.example.com/v1")
		if !assert.NoError(c, err) {
			return
		}
		var names []string
		for _, r := range list.APIResources {
			names = append(names, r.Name)
		}
		assert.Contains(c, names, "backuppolicies")
	}, resourceWaitLong, 100*time.Millisecond)
}

func TestDeterministicName(t *testing.T) {
	a := DeterministicName("dr-job-", "uid-1", "stage/0/backup")
	assert.Equal(t, a, DeterministicName("dr-job-", "uid-1", "stage/0/backup"), "same inputs, same name")
	assert.Regexp(t, `^dr-job-[bcdfghjklmnpqrstvwxz2456789]{5}$`, a)
	assert.NotEqual(t, a, DeterministicName("dr-job-", "uid-2", "stage/0/backup"), "another execution")
	assert.NotEqual(t, a, DeterministicName("dr-job-", "uid-1", "stage/0/restore"), "another action")
	// The separator keeps ("ab", "c") and ("a", "bc") apart.
	assert.NotEqual(t, DeterministicName("x-", "ab", "c"), DeterministicName("x-", "a", "bc"))

	long := DeterministicName(strings.Repeat("a", 70), "uid-1", "s/0/a")
	assert.Len(t, long, 63, "a long prefix is cut like the API server cuts generateName")
	assert.Equal(t, strings.Repeat("a", 58), long[:58])
}

func TestClientFactoryCachesOneClientPerIdentity(t *testing.T) {
	f, err := NewClientFactory(&rest.Config{Host: "https://127.0.0.1:1"})
	require.NoError(t, err)
	identities := []string{"", "prod/dr-runner", "staging/dr-runner"}
	got := make([][]dynamic.Interface, len(identities))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, sa := range identities {
		for range 8 {
			wg.Go(func() {
				c, _, err := f.Clients(sa)
				assert.NoError(t, err)
				mu.Lock()
				got[i] = append(got[i], c)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for i := range identities {
		for _, c := range got[i] {
			assert.Same(t, got[i][0], c, "one client for %q", identities[i])
		}
	}
	assert.NotSame(t, got[0][0], got[1][0])
	assert.NotSame(t, got[1][0], got[2][0])
	assert.Same(t, f.RESTMapper(), func() any { _, m, _ := f.Clients(""); return m }())

	for _, bad := range []string{"dr-runner", "/dr-runner", "prod/", "a/b/c"} {
		_, err := f.Dynamic(bad)
		assert.ErrorContains(t, err, "want namespace/name", bad)
	}
	user, err := serviceAccountUser("prod/dr-runner")
	require.NoError(t, err)
	assert.Equal(t, "system:serviceaccount:prod:dr-runner", user)
}
