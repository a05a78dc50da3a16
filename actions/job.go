package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// JobRunner runs Job actions: it creates the Job (as the KubernetesResource runner creates an
// object: labelled, a generateName made deterministic per execution and action, so a retry or a
// restart finds the Job instead of making a second one), then waits for its Complete or Failed
// condition, woken by an informer on that Job (no polling). Past the action's timeout the Job is
// deleted, its pods with it, and the action fails.
type JobRunner struct {
	resources *ResourceRunner
	finished  *rules.Program
}

// jobFinished is true once the job controller has decided.
const jobFinished = `has(object.status.conditions) && object.status.conditions.exists(c, (c.type == 'Complete' || c.type == 'Failed') && c.status == 'True')`

// DefaultJobTimeout bounds a Job action without a timeout of its own (--default-job-timeout):
// no action waits without end, holding its run and the plan's lock.
const DefaultJobTimeout = time.Hour

// NewJobRunner runs Job actions through resources; env compiles its wait for the Job's end.
func NewJobRunner(env *rules.Env, resources *ResourceRunner) *JobRunner {
	finished, err := env.Compile(jobFinished)
	if err != nil {
		panic(err) // a constant expression: caught by the tests
	}
	return &JobRunner{resources: resources, finished: finished}
}

// Run creates the Job and waits for its end. Its API calls retry transient errors until the
// action's timeout, or without one for the factory's APIRetryTimeout; the message says so.
func (j *JobRunner) Run(ctx context.Context, req Request) (Result, error) {
	spec := req.Body.Job
	if req.Body.Type != drv1.ActionTypeJob || spec == nil {
		return Result{}, fmt.Errorf("job runner: want a Job action with a job block, got type %q", req.Body.Type)
	}
	timeout, err := spec.Timeout.Parse()
	if err != nil {
		return Result{}, fmt.Errorf("job.timeout: %w", err)
	}
	budget, within := timeout, string(spec.Timeout)
	if timeout <= 0 {
		timeout = j.resources.clients.JobTimeout()
		budget, within = j.resources.clients.APIRetryTimeout(), timeout.String()+" (the default of a Job without a timeout, --default-job-timeout)"
	}
	calls := j.resources.clients.apiCalls(budget)
	res, err := j.run(ctx, req, timeout, within, calls)
	return calls.report(res, err)
}

// run creates the Job of req (its API calls retried by calls) and waits for its end, at most
// timeout (within says it).
func (j *JobRunner) run(ctx context.Context, req Request, timeout time.Duration, within string, calls *apiCalls) (Result, error) {
	spec := req.Body.Job
	manifest, err := JobManifest(spec)
	if err != nil {
		return Result{}, err
	}
	create := req
	create.Body = drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
		Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: manifest}}
	res, err := j.resources.run(ctx, create, calls)
	if err != nil || res.ResourceRef == nil {
		return res, err
	}
	ref := *res.ResourceRef
	desc := fmt.Sprintf("Job %s/%s", ref.Namespace, ref.Name)
	obj, err := j.resources.clients.WaitFor(ctx, req.ServiceAccount, ref, j.finished, nil, timeout, func(string) {})
	var late *WaitTimeout
	switch {
	case errors.As(err, &late):
		// Give up on it: delete the Job and its pods (background propagation), so nothing keeps
		// running after the action has failed.
		if _, derr := j.resources.DeleteCreated(context.WithoutCancel(ctx), req.ServiceAccount, ref); derr != nil {
			return res, fmt.Errorf("%s did not finish within %s, and deleting it failed: %w", desc, within, derr)
		}
		return res, fmt.Errorf("%s did not finish within %s: deleted it and its pods", desc, within)
	case err != nil:
		return res, fmt.Errorf("waiting for %s: %w", desc, err)
	}
	var job batchv1.Job
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.UnstructuredContent(), &job); err != nil {
		return res, fmt.Errorf("reading %s: %w", desc, err)
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			res.Message = desc + " completed"
			return res, nil
		case batchv1.JobFailed:
			return res, fmt.Errorf("%s failed: %s: %s", desc, c.Reason, c.Message)
		}
	}
	return res, fmt.Errorf("%s: finished without a Complete or Failed condition", desc)
}

// JobManifest is the Job an action creates, as JSON: its pod template, with restartPolicy Never
// unless the template sets one (a Job's pods may not restart Always).
func JobManifest(spec *drv1.JobAction) (string, error) {
	var tmpl corev1.PodTemplateSpec
	if len(spec.Template.Raw) > 0 {
		if err := json.Unmarshal(spec.Template.Raw, &tmpl); err != nil {
			return "", fmt.Errorf("job.template: not a pod template: %w", err)
		}
	}
	if tmpl.Spec.RestartPolicy == "" {
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	job := batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, GenerateName: spec.GenerateName, Namespace: spec.Namespace},
		Spec:       batchv1.JobSpec{Template: tmpl, BackoffLimit: spec.BackoffLimit},
	}
	data, err := json.Marshal(job)
	if err != nil {
		return "", err
	}
	return string(data), nil
}
