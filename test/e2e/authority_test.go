package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
)

// The attack suite (docs/security.md): tenants who may write DR objects in one namespace try to
// make the controller do what they could not do themselves. Each attack is refused by the
// admission webhook naming the missing right, and again by the controller with the validating
// webhook unregistered (the mutating one still records who asks), with nothing created, changed
// or read; a user who has the rights succeeds.

// tenant is a namespace with the suite's tenants:
//   - alice writes workflows and plans and creates and cancels executions there, and may do
//     anything with ConfigMaps there;
//   - bob may only create (and read) executions there;
//   - carol may only read and patch plans there (so set a trigger).
type tenant struct {
	ns                string
	alice, bob, carol versioned.Interface
}

func newTenant(t *testing.T) *tenant {
	t.Helper()
	ns := newNamespace(t, "tenant")
	dr := drv1.GroupName
	roles := map[string][]rbacv1.PolicyRule{
		"alice": {
			{APIGroups: []string{dr}, Resources: []string{"drworkflows", "drplans"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{dr}, Resources: []string{"drplanexecutions"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}},
		},
		"bob": {
			{APIGroups: []string{dr}, Resources: []string{"drplanexecutions"}, Verbs: []string{"get", "list", "watch", "create"}},
			{APIGroups: []string{dr}, Resources: []string{"drplans", "drworkflows"}, Verbs: []string{"get", "list", "watch"}},
		},
		"carol": {
			{APIGroups: []string{dr}, Resources: []string{"drplans"}, Verbs: []string{"get", "list", "watch", "patch"}},
		},
	}
	for user, rules := range roles {
		grant(t, ns, user, rules)
	}
	tn := &tenant{ns: ns}
	tn.alice, _ = asUser(t, "alice")
	tn.bob, _ = asUser(t, "bob")
	tn.carol, _ = asUser(t, "carol")
	return tn
}

// grant gives user the rules in ns (a Role and a RoleBinding named after the user).
func grant(t *testing.T, ns, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	name := "grant-" + strings.ReplaceAll(user, ":", ".")
	_, err := env.Kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// The API server's authorizer sees a new binding a moment later: wait for it, so that no
	// check (and no answer the controller keeps for a few seconds) comes before it.
	r := rules[0]
	eventually(t, "the grant to "+user+" to take effect", func() (bool, string) {
		sar, err := env.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: r.Verbs[0], Group: r.APIGroups[0], Resource: r.Resources[0], Namespace: ns,
				Name: strings.Join(r.ResourceNames, "")}}}, metav1.CreateOptions{})
		return err == nil && sar.Status.Allowed, fmt.Sprint(err)
	})
}

// resourceWorkflow is a workflow (and a plan of it, named the same) of one KubernetesResource
// action "plant" (a Patch or Apply with itself as its rollback), applied by the cluster admin.
func resourceWorkflow(t *testing.T, ns, name string, op drv1.ResourceOperation, manifest string, sa string) {
	t.Helper()
	spec, rollback := "", ""
	if sa != "" {
		spec = "\n  serviceAccountName: " + sa
	}
	if op == drv1.OperationPatch || op == drv1.OperationApply {
		rollback = fmt.Sprintf("\n    rollback: {type: KubernetesResource, resource: {operation: %s, manifest: %q}}", op, manifest)
	}
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  parameters: [{name: secret}]
  actions:
  - name: plant
    type: KubernetesResource
    resource:
      operation: %[3]s
      manifest: %[4]q%[6]s
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  workflowRef: {name: %[1]s}%[5]s
`, name, ns, op, manifest, spec, rollback))
	waitPlanPhase(t, ns, name, drv1.PlanReady)
}

// execute creates an execution of plan as client, with params.
func execute(client versioned.Interface, ns, name, plan string, params ...drv1.ParamValue) error {
	_, err := client.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}, Params: params},
	}, metav1.CreateOptions{})
	return err
}

// refusedTwice: client's execution of plan is refused at admission with want; with the
// validating webhook unregistered it is admitted and the controller fails it, before any side
// effect, with want too.
func refusedTwice(t *testing.T, client versioned.Interface, ns, plan, want string, params ...drv1.ParamValue) *drv1.DRPlanExecution {
	t.Helper()
	err := execute(client, ns, plan+"-admitted", plan, params...)
	require.Error(t, err, "admission should refuse it")
	assert.Contains(t, err.Error(), want)
	t.Logf("admission: %v", err)
	_, err = env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), plan+"-admitted", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "nothing stored")

	withoutWebhook(t)
	require.NoError(t, execute(client, ns, plan+"-unchecked", plan, params...))
	e := waitExecution(t, ns, plan+"-unchecked", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, want)
	t.Logf("the controller: %s", e.Status.Message)
	require.NoError(t, env.SetWebhook(true))
	return e
}

// authorRefusedTwice: alice's plan is refused at admission with want; with the validating
// webhook unregistered it is stored, and her execution of it fails at start with want too.
func authorRefusedTwice(t *testing.T, tn *tenant, plan *drv1.DRPlan, want string) {
	t.Helper()
	ctx := context.Background()
	_, err := tn.alice.DrV1alpha1().DRPlans(tn.ns).Create(ctx, plan, metav1.CreateOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), want)
	t.Logf("admission: %v", err)
	withoutWebhook(t)
	_, err = tn.alice.DrV1alpha1().DRPlans(tn.ns).Create(ctx, plan, metav1.CreateOptions{})
	require.NoError(t, err)
	waitPlanPhase(t, tn.ns, plan.Name, drv1.PlanReady)
	require.NoError(t, execute(tn.alice, tn.ns, plan.Name+"-run", plan.Name))
	e := waitExecution(t, tn.ns, plan.Name+"-run", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, want)
	t.Logf("the controller: %s", e.Status.Message)
}

// succeedsForAdmin: the cluster admin, who has every right, runs the plan with the validating
// webhook unregistered, and it succeeds.
func succeedsForAdmin(t *testing.T, ns, plan string, params ...drv1.ParamValue) {
	t.Helper()
	withoutWebhook(t)
	name := plan + "-admin"
	require.NoError(t, execute(env.DR, ns, name, plan, params...))
	waitExecution(t, ns, name, drv1.ExecutionSucceeded)
	require.NoError(t, env.SetWebhook(true))
}

func absent(t *testing.T, err error, what string) {
	t.Helper()
	assert.True(t, apierrors.IsNotFound(err), "%s must not exist: %v", what, err)
}

func TestAttackActionsOutsideTheirRights(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	other := newNamespace(t, "victim")
	secret, err := env.Kube.CoreV1().Secrets(other).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "hunter2"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	t.Run("a ConfigMap in kube-system", func(t *testing.T) {
		resourceWorkflow(t, tn.ns, "plant", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: planted-{{ .executionName }}, namespace: kube-system}\n", "")
		refusedTwice(t, tn.alice, tn.ns, "plant", `user "alice" may not create configmaps in namespace "kube-system" (stage "default", workflow `+tn.ns+`/plant, action "plant")`)
		list, err := env.Kube.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, cm := range list.Items {
			assert.False(t, strings.HasPrefix(cm.Name, "planted-"), "created: %s", cm.Name)
		}
		// The cluster admin has the right: the same run succeeds, with the validating webhook unregistered.
		withoutWebhook(t)
		createExecution(t, tn.ns, "admin-run", "plant")
		waitExecution(t, tn.ns, "admin-run", drv1.ExecutionSucceeded)
		_, err = env.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "planted-admin-run", metav1.GetOptions{})
		require.NoError(t, err)
	})

	t.Run("a Job in another namespace", func(t *testing.T) {
		kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: job, namespace: %[1]s}
spec:
  actions:
  - name: plant
    type: Job
    job:
      name: miner
      namespace: %[2]s
      template: {spec: {containers: [{name: c, image: drplan.local/busybox:1, command: [sh, -c, "true"]}]}}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: job, namespace: %[1]s}
spec: {workflowRef: {name: job}}
`, tn.ns, other))
		waitPlanPhase(t, tn.ns, "job", drv1.PlanReady)
		refusedTwice(t, tn.alice, tn.ns, "job", `user "alice" may not create jobs.batch in namespace "`+other+`"`)
		_, err := env.Kube.BatchV1().Jobs(other).Get(ctx, "miner", metav1.GetOptions{})
		absent(t, err, "the Job")
	})

	t.Run("a Secret patched in another namespace", func(t *testing.T) {
		resourceWorkflow(t, tn.ns, "patch", drv1.OperationPatch, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: %s}\nstringData: {password: owned}\n", other), "")
		refusedTwice(t, tn.alice, tn.ns, "patch", fmt.Sprintf(`user "alice" may not patch secrets "db" in namespace %q`, other))
		got, err := env.Kube.CoreV1().Secrets(other).Get(ctx, "db", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, secret.ResourceVersion, got.ResourceVersion, "unchanged")
		succeedsForAdmin(t, tn.ns, "patch")
	})

	t.Run("a ClusterRoleBinding", func(t *testing.T) {
		resourceWorkflow(t, tn.ns, "escalate", drv1.OperationCreate,
			"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: alice-{{ .executionName }}}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}]\n", "")
		refusedTwice(t, tn.alice, tn.ns, "escalate", "RBAC objects (clusterrolebindings.rbac.authorization.k8s.io) are not made for the requester of a plan without a serviceAccountName")
		_, err := env.Kube.RbacV1().ClusterRoleBindings().Get(ctx, "alice-escalate-unchecked", metav1.GetOptions{})
		absent(t, err, "the ClusterRoleBinding")
	})

	t.Run("bob reads a Secret through valueFrom", func(t *testing.T) {
		kubectlApply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: tenant-db, namespace: %s}\nstringData: {password: s3cr3t-value}\n", tn.ns))
		resourceWorkflow(t, tn.ns, "leak", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak-{{ .executionName }}}\ndata: {v: \"{{ .params.secret }}\"}\n", "")
		params := drv1.ParamValue{Name: "secret", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "tenant-db", Key: "password"}}}
		e := refusedTwice(t, tn.bob, tn.ns, "leak", `user "bob" may not get secrets "tenant-db" in namespace "`+tn.ns+`" (a parameter's valueFrom.secretKeyRef)`, params)
		assert.NotContains(t, fmt.Sprint(e.Status), "s3cr3t-value")
		_, err := env.Kube.CoreV1().ConfigMaps(tn.ns).Get(ctx, "leak-leak-unchecked", metav1.GetOptions{})
		absent(t, err, "the ConfigMap carrying the Secret")
		succeedsForAdmin(t, tn.ns, "leak", params)
	})

	t.Run("bob cannot delete what his Revert would", func(t *testing.T) {
		resourceWorkflow(t, tn.ns, "made", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made-{{ .executionName }}}\n", "")
		createExecution(t, tn.ns, "first", "made")
		waitExecution(t, tn.ns, "first", drv1.ExecutionSucceeded)
		revert := func(name string) error {
			_, err := tn.bob.DrV1alpha1().DRPlanExecutions(tn.ns).Create(ctx, &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "made"}, Operation: drv1.OperationRevert}}, metav1.CreateOptions{})
			return err
		}
		want := `user "bob" may not delete configmaps "made-first" in namespace "` + tn.ns + `"`
		err := revert("undo")
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		withoutWebhook(t)
		require.NoError(t, revert("undo-unchecked"))
		e := waitExecution(t, tn.ns, "undo-unchecked", drv1.ExecutionFailed)
		assert.Contains(t, e.Status.Message, want)
		_, err = env.Kube.CoreV1().ConfigMaps(tn.ns).Get(ctx, "made-first", metav1.GetOptions{})
		require.NoError(t, err, "still there")
		createRevert(t, tn.ns, "admin-undo", "made", "first") // the cluster admin may
		waitExecution(t, tn.ns, "admin-undo", drv1.ExecutionSucceeded)
		_, err = env.Kube.CoreV1().ConfigMaps(tn.ns).Get(ctx, "made-first", metav1.GetOptions{})
		absent(t, err, "the reverted ConfigMap")
	})
}

// TestAttackTheControllersOwnObjects: no action touches the controller's Deployment, Lease or
// webhook configuration, not even the cluster admin's: refused when the workflow's static
// manifest names them, else when the execution is admitted, and by the controller at start.
func TestAttackTheControllersOwnObjects(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "own")
	ownWebhook := webhookConfigName
	if env.InCluster {
		ownWebhook = chartWebhook
	}
	kinds := []struct {
		name, manifest string
	}{
		{"deployment", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: drplan-controller, namespace: drplan-system}\nspec: {replicas: 0}\n"},
		{"lease", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: drplan-controller, namespace: drplan-system}\nspec: {holderIdentity: attacker}\n"},
		{"webhook", "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: " + ownWebhook + "}\nwebhooks: []\n"},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			// Static: the workflow is refused.
			stderr := kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: static-%s, namespace: %s}\nspec:\n  actions:\n  - name: plant\n    type: KubernetesResource\n    resource: {operation: Delete, manifest: %q}\n",
				k.name, ns, k.manifest), "apply", "-f", "-")
			assert.Contains(t, stderr, access.OffLimitsReason)
			// Templated: the execution, and the run.
			templated := strings.Replace(k.manifest, "name: drplan-controller", `name: "{{ .params.secret }}"`, 1)
			templated = strings.Replace(templated, "name: "+ownWebhook, `name: "{{ .params.secret }}"`, 1)
			resourceWorkflow(t, ns, k.name, drv1.OperationDelete, templated, "")
			target := "drplan-controller"
			if k.name == "webhook" {
				target = ownWebhook
			}
			refusedTwice(t, env.DR, ns, k.name, access.OffLimitsReason, drv1.ParamValue{Name: "secret", Value: target})
		})
	}
	if !env.InCluster {
		return
	}
	d, err := env.Kube.AppsV1().Deployments("drplan-system").Get(ctx, "drplan-controller", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, int32(0), *d.Spec.Replicas)
}

// TestAttackThroughAPlan: a ServiceAccount one may not impersonate, a workflow of another
// namespace one may not read, a trigger standing in for a create one may not make.
func TestAttackThroughAPlan(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	_, err := env.Kube.CoreV1().ServiceAccounts(tn.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "powerful"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(tn.ns, "wf", rec, "", "/ok"))
	waitWorkflowPhase(t, tn.ns, "wf", drv1.WorkflowReady)
	saPlan := func(name string) *drv1.DRPlan {
		return &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, ServiceAccountName: "powerful"}}
	}

	t.Run("alice names a ServiceAccount she may not impersonate", func(t *testing.T) {
		authorRefusedTwice(t, tn, saPlan("sa"), `user "alice" may not impersonate serviceaccounts "powerful" in namespace "`+tn.ns+`"`)
		assert.Empty(t, rec.CallsTo("/ok"), "no action ran")
	})

	t.Run("bob executes a ServiceAccount plan without impersonate", func(t *testing.T) {
		_, err := env.DR.DrV1alpha1().DRPlans(tn.ns).Create(ctx, saPlan("admins"), metav1.CreateOptions{})
		require.NoError(t, err)
		waitPlanPhase(t, tn.ns, "admins", drv1.PlanReady)
		refusedTwice(t, tn.bob, tn.ns, "admins", `user "bob" may not impersonate serviceaccounts "powerful" in namespace "`+tn.ns+`"`)
		assert.Empty(t, rec.CallsTo("/ok"), "no action ran")
		// Whoever may impersonate it runs it.
		grant(t, tn.ns, "dave", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, ResourceNames: []string{"powerful"}, Verbs: []string{"impersonate"}},
			{APIGroups: []string{drv1.GroupName}, Resources: []string{"drplanexecutions"}, Verbs: []string{"create", "get"}}})
		dave, _ := asUser(t, "dave")
		require.NoError(t, execute(dave, tn.ns, "dave-run", "admins"))
		waitExecution(t, tn.ns, "dave-run", drv1.ExecutionSucceeded)
	})

	t.Run("a workflow of another namespace alice may not read", func(t *testing.T) {
		elsewhere := newNamespace(t, "elsewhere")
		kubectlApply(t, httpWorkflow(elsewhere, "shared", rec, "", "/shared"))
		waitWorkflowPhase(t, elsewhere, "shared", drv1.WorkflowReady)
		plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "cross"},
			Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "shared", Namespace: elsewhere}}}
		authorRefusedTwice(t, tn, plan, `user "alice" may not get drworkflows.dr.bkbcs.tencent.com "shared" in namespace "`+elsewhere+`"`)
		assert.Empty(t, rec.CallsTo("/shared"), "no action ran")
	})

	t.Run("carol triggers without the right to create executions", func(t *testing.T) {
		applyPlan(t, tn.ns, "trig", "wf")
		patch := []byte(`{"metadata":{"annotations":{"` + drv1.AnnotationTrigger + `":"execute"}}}`)
		want := `user "carol" may not create drplanexecutions.dr.bkbcs.tencent.com in namespace "` + tn.ns + `"`
		_, err := tn.carol.DrV1alpha1().DRPlans(tn.ns).Patch(ctx, "trig", types.MergePatchType, patch, metav1.PatchOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		withoutWebhook(t)
		_, err = tn.carol.DrV1alpha1().DRPlans(tn.ns).Patch(ctx, "trig", types.MergePatchType, patch, metav1.PatchOptions{})
		require.NoError(t, err)
		e := waitFor(t, "the trigger's execution to fail", func() (*drv1.DRPlanExecution, error) {
			list, err := env.DR.DrV1alpha1().DRPlanExecutions(tn.ns).List(ctx, metav1.ListOptions{LabelSelector: drv1.LabelPlan + "=trig"})
			if err != nil || len(list.Items) == 0 {
				return nil, err
			}
			return &list.Items[0], nil
		}, func(e *drv1.DRPlanExecution) (bool, string) {
			return e != nil && e.Status.Phase == drv1.ExecutionFailed, fmt.Sprint(e)
		})
		assert.Contains(t, e.Status.Message, want)
	})
}

// heldRun starts alice's execution "run" of plan "p" in the tenant's namespace (workflow "wf": an
// HTTP call, held, then a ConfigMap configMap created) and returns once the call is held, with
// what lets it go on.
func heldRun(t *testing.T, tn *tenant, configMap string) (release func()) {
	t.Helper()
	rec := newRecorder(t)
	release = rec.hold("/hold")
	t.Cleanup(release)
	kubectlApply(t, callThenConfigMap(tn.ns, rec.URL("/hold"), configMap))
	applyPlan(t, tn.ns, "p", "wf")
	require.NoError(t, execute(tn.alice, tn.ns, "run", "p"))
	eventually(t, "the first action to be called", func() (bool, string) { return rec.Arrived("/hold") > 0, "" })
	return release
}

// TestAttackRightRevokedMidRun: a right revoked between two actions of a running plan stops the
// next one (answers are kept at most ten seconds).
func TestAttackRightRevokedMidRun(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	release := heldRun(t, tn, "late")
	require.NoError(t, env.Kube.RbacV1().RoleBindings(tn.ns).Delete(ctx, "grant-alice", metav1.DeleteOptions{}))
	time.Sleep(access.DefaultTTL + time.Second) // the answer kept from the start expires
	release()
	e := waitExecution(t, tn.ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, fmt.Sprint(e.Status.ActionStatuses), `not started: user "alice" may not create configmaps in namespace "`+tn.ns+`"`)
	_, err := env.Kube.CoreV1().ConfigMaps(tn.ns).Get(ctx, "late", metav1.GetOptions{})
	absent(t, err, "the ConfigMap")
}

// TestAttackForgedRequester: an execution created with an admin's requester record runs as its
// real creator, with the validating webhook registered or not (the mutating one overwrites it).
func TestAttackForgedRequester(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	resourceWorkflow(t, tn.ns, "plant", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: forged-{{ .executionName }}, namespace: kube-system}\n", "")
	forge := func(name string) error {
		_, err := tn.alice.DrV1alpha1().DRPlanExecutions(tn.ns).Create(ctx, &drv1.DRPlanExecution{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{drv1.AnnotationRequester: adminRequester(t).Encode()}},
			Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "plant"}}}, metav1.CreateOptions{})
		return err
	}
	want := `user "alice" may not create configmaps in namespace "kube-system"`
	err := forge("registered")
	require.Error(t, err)
	assert.Contains(t, err.Error(), want)
	withoutWebhook(t)
	require.NoError(t, forge("unregistered"))
	e := waitExecution(t, tn.ns, "unregistered", drv1.ExecutionFailed)
	r, _ := recorded(t, e)
	assert.Equal(t, "alice", r.Username)
	assert.Contains(t, e.Status.Message, want)
	_, err = env.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, "forged-unregistered", metav1.GetOptions{})
	absent(t, err, "the ConfigMap")
}

// TestLockdownActsAsTheNamedServiceAccount: with --plans-without-service-account=serviceaccount:NAME,
// a plan without one acts as NAME of its namespace: the API server refuses what NAME may not do,
// even for the cluster admin's run.
func TestLockdownActsAsTheNamedServiceAccount(t *testing.T) {
	if env.SetPolicy == nil {
		t.Skip("this backend cannot restart its controller under another policy")
	}
	ns := newNamespace(t, "lockdown")
	require.NoError(t, env.SetPolicy(access.Policy{WithoutServiceAccount: access.WithoutServiceAccount{ActAs: "drplan-runner"}}))
	t.Cleanup(func() { require.NoError(t, env.SetPolicy(access.Policy{})) })
	_, err := env.Kube.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "drplan-runner"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	resourceWorkflow(t, ns, "plant", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: by-runner}\n", "")
	createExecution(t, ns, "run", "plant")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, fmt.Sprint(e.Status.ActionStatuses), `User "system:serviceaccount:`+ns+`:drplan-runner" cannot create resource "configmaps"`)
	// Granted to the ServiceAccount, the same run succeeds.
	grant(t, ns, "system:serviceaccount:"+ns+":drplan-runner", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "get"}}})
	createExecution(t, ns, "again", "plant")
	waitExecution(t, ns, "again", drv1.ExecutionSucceeded)
}

// TestAttackCancelTrigger: a plan's cancel trigger stands in for updating the execution; whoever
// may only patch plans cancels nothing.
func TestAttackCancelTrigger(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	release := heldRun(t, tn, "after-cancel")
	patch := []byte(`{"metadata":{"annotations":{"` + drv1.AnnotationTrigger + `":"cancel"}}}`)
	want := `user "carol" may not update drplanexecutions.dr.bkbcs.tencent.com "run" in namespace "` + tn.ns + `"`
	_, err := tn.carol.DrV1alpha1().DRPlans(tn.ns).Patch(ctx, "p", types.MergePatchType, patch, metav1.PatchOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), want)
	withoutWebhook(t)
	_, err = tn.carol.DrV1alpha1().DRPlans(tn.ns).Patch(ctx, "p", types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err)
	eventually(t, "the controller's refusal", func() (bool, string) {
		out := kubectl(t, "describe", "drplan", "p", "-n", tn.ns)
		return strings.Contains(out, "TriggerRefused") && strings.Contains(out, "not cancelling run"), out
	})
	release()
	e := waitExecution(t, tn.ns, "run", drv1.ExecutionSucceeded)
	assert.Empty(t, e.Annotations[drv1.AnnotationCancel])
}

// TestAttackExcludedNamespace: where the webhooks are not called (kube-system), a requester record
// is whatever the client wrote: nothing there runs, whoever it names.
func TestAttackExcludedNamespace(t *testing.T) {
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow("kube-system", "excluded", rec, "", "/excluded"))
	kubectlApply(t, planYAML("kube-system", "excluded", "excluded"))
	waitPlanPhase(t, "kube-system", "excluded", drv1.PlanReady)
	_, err := env.DR.DrV1alpha1().DRPlanExecutions("kube-system").Create(context.Background(), &drv1.DRPlanExecution{
		ObjectMeta: requested(t, metav1.ObjectMeta{Name: "forged"}), // an admin's record, written by the client
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "excluded"}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	e := waitExecution(t, "kube-system", "forged", drv1.ExecutionFailed)
	assert.Equal(t, drv1.NoRequesterMessage, e.Status.Message)
	assert.Empty(t, rec.CallsTo("/excluded"))
}

// TestAttackRecordsWithoutTheValidatingWebhook: the recording step alone (the validating webhook
// unregistered) refuses a user's edit of the records: a plan's pending trigger naming an admin as
// its requester, an execution's requester changed or removed.
func TestAttackRecordsWithoutTheValidatingWebhook(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	heldRun(t, tn, "records") // Running while its records are attacked
	withoutWebhook(t)

	admin := adminRequester(t).Encode()
	pending, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		drv1.AnnotationTriggerPending: "Execute/forged", drv1.AnnotationTriggerPendingRequester: admin}}})
	require.NoError(t, err)
	_, err = tn.alice.DrV1alpha1().DRPlans(tn.ns).Patch(ctx, "p", types.MergePatchType, pending, metav1.PatchOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "written only by the drplan-controller, while it turns a trigger into an execution")

	for _, value := range []any{admin, nil} { // changed, removed
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{drv1.AnnotationRequester: value}}})
		require.NoError(t, err)
		_, err = tn.alice.DrV1alpha1().DRPlanExecutions(tn.ns).Patch(ctx, "run", types.MergePatchType, patch, metav1.PatchOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the requester is recorded when the execution is created, and never changes")
	}
	e, err := env.DR.DrV1alpha1().DRPlanExecutions(tn.ns).Get(ctx, "run", metav1.GetOptions{})
	require.NoError(t, err)
	r, _ := recorded(t, e)
	assert.Equal(t, "alice", r.Username)
	_, err = env.DR.DrV1alpha1().DRPlanExecutions(tn.ns).Get(ctx, "forged", metav1.GetOptions{})
	absent(t, err, "an execution for the forged trigger")
}

// TestAttackForgedOutputs: the outputs a Revert deletes cannot be forged through a status write
// (only the controller writes status); and with the validating webhook unregistered, a forged
// output is deleted only for a requester who may delete that object.
func TestAttackForgedOutputs(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	grant(t, tn.ns, "alice-status", []rbacv1.PolicyRule{{APIGroups: []string{drv1.GroupName}, Resources: []string{"*"}, Verbs: []string{"*"}}}) // the resources: ["*"]
	aliceStatus, _ := asUser(t, "alice-status")
	victim, err := env.Kube.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "victim-"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	resourceWorkflow(t, tn.ns, "made", drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made-{{ .executionName }}}\n", "")
	createExecution(t, tn.ns, "first", "made")
	waitExecution(t, tn.ns, "first", drv1.ExecutionSucceeded)
	forge := func() error {
		// A conflict (the controller's last writes of the run) comes before admission: try again.
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			e, err := aliceStatus.DrV1alpha1().DRPlanExecutions(tn.ns).Get(ctx, "first", metav1.GetOptions{})
			require.NoError(t, err)
			for i := range e.Status.Outputs {
				if r := e.Status.Outputs[i].ResourceRef; r != nil {
					r.Namespace, r.Name, r.UID = "kube-system", victim.Name, string(victim.UID)
				}
			}
			_, err = aliceStatus.DrV1alpha1().DRPlanExecutions(tn.ns).UpdateStatus(ctx, e, metav1.UpdateOptions{})
			return err
		})
	}
	err = forge()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "its status is written only by the drplan-controller")

	withoutWebhook(t)
	require.NoError(t, forge(), "RBAC allows it; only the validating webhook refused")
	_, err = aliceStatus.DrV1alpha1().DRPlanExecutions(tn.ns).Create(ctx, &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "undo"},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "made"}, Operation: drv1.OperationRevert}}, metav1.CreateOptions{})
	require.NoError(t, err)
	e := waitExecution(t, tn.ns, "undo", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, `user "alice-status" may not delete configmaps "`+victim.Name+`" in namespace "kube-system"`)
	_, err = env.Kube.CoreV1().ConfigMaps("kube-system").Get(ctx, victim.Name, metav1.GetOptions{})
	require.NoError(t, err, "the victim is still there")
}
