// Command drplan-controller runs disaster-recovery plans declared as DRWorkflow, DRPlan and
// DRPlanExecution resources. It uses --kubeconfig when given, else the in-cluster config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	logsjson "k8s.io/component-base/logs/json"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/cmd/drplan-controller/app"
	"github.com/bkbcs/drplan-controller/controller"
)

func main() {
	f := parseFlags()
	if err := setLogFormat(f.logFormat); err != nil {
		fmt.Fprintf(os.Stderr, "drplan-controller: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())
	cfg, opts, err := f.options()
	if err == nil {
		err = app.RunWithConfig(ctx, cfg, opts)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "drplan-controller: %v\n", err)
		os.Exit(1)
	}
}

// flags are the command line.
type flags struct {
	kubeconfig, namespace, logFormat string

	workers, actionWorkers int
	rulesFile              string
	qps, webhookQPS        float64
	burst, webhookBurst    int
	grace, apiRetry, jobTO time.Duration
	requireSA              bool
	withoutSA, clusterRole string
	refuseCrossNamespace   bool
	unrecorded             string

	httpDenyCIDRs, httpAllowCIDRs, httpDenyHosts, httpAllowHosts string

	webhookAddr, webhookCertDir, webhookSecret, webhookService, webhookConfig string
	metricsAddr                                                               string
	leaderElect                                                               bool
	leaderID, podName                                                         string
}

func parseFlags() *flags {
	klog.InitFlags(nil)
	f := &flags{}
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty means the in-cluster config.")
	flag.IntVar(&f.workers, "workers", 4, "Number of objects synced at once.")
	flag.IntVar(&f.actionWorkers, "action-workers", 64, "Number of actions run at once, across all executions.")
	flag.StringVar(&f.rulesFile, "rules-file", "",
		"YAML list of {name, expression, message} replacing built-in CEL rules (StageReady, StageBlocked, PlanLock, RevertEligible) by name; see docs/rules.md.")
	flag.Float64Var(&f.qps, "kube-api-qps", app.DefaultQPS, "Client-side limit of API requests per second.")
	flag.IntVar(&f.burst, "kube-api-burst", app.DefaultBurst, "Client-side burst of API requests.")
	flag.Float64Var(&f.webhookQPS, "webhook-kube-api-qps", app.DefaultWebhookQPS,
		"Client-side limit of the admission webhook's own API requests per second (reads of objects not in the caches yet, SubjectAccessReviews), apart from --kube-api-qps.")
	flag.IntVar(&f.webhookBurst, "webhook-kube-api-burst", app.DefaultWebhookBurst, "Client-side burst of the admission webhook's own API requests.")
	flag.DurationVar(&f.grace, "shutdown-grace", controller.DefaultShutdownGrace,
		"How long actions in flight may finish after SIGTERM; their results are written and nothing new starts. Keep it below the pod's terminationGracePeriodSeconds.")
	flag.DurationVar(&f.apiRetry, "api-retry-timeout", actions.DefaultAPIRetryTimeout,
		"How long the API calls of a KubernetesResource, Job (without a timeout of its own), Localization or Subscription action, "+
			"the plan lock's writes and the rights check before an action retry transient errors (429, 5xx, timeouts, refused or dropped connections); "+
			"a Job with a timeout retries until it. See docs/operations.md.")
	flag.DurationVar(&f.jobTO, "default-job-timeout", actions.DefaultJobTimeout,
		"How long a Job action without a timeout of its own may run; past it the Job and its pods are deleted and the action fails.")
	flag.StringVar(&f.withoutSA, "plans-without-service-account", access.RequesterChecked,
		"What a plan without spec.serviceAccountName does (docs/security.md): requester (every action's rights are checked for "+
			"who asked, then the controller acts), refuse (it never runs), or serviceaccount:NAME (the lockdown: checked for who asked, "+
			"then acts as ServiceAccount NAME of the plan's namespace, so the controller's own rights never touch user objects).")
	flag.BoolVar(&f.requireSA, "require-service-account", false, "Deprecated: --plans-without-service-account=refuse.")
	flag.BoolVar(&f.refuseCrossNamespace, "refuse-cross-namespace-workflows", false,
		"Refuse plans whose workflowRef names another namespace (else the plan's author, and each requester, need get on that DRWorkflow).")
	flag.StringVar(&f.unrecorded, "webhook-excluded-namespaces", strings.Join(admission.SystemNamespaces, ","),
		"Comma-separated namespaces the webhook configurations exclude (the chart's webhook.excludeNamespaces): "+
			"no record of who asks is made there, so no execution or trigger there runs.")
	flag.StringVar(&f.clusterRole, "cluster-role", "drplan-controller",
		"Name of the ClusterRole and ClusterRoleBinding granting the controller its rights: off limits to actions, like everything in --namespace.")
	flag.StringVar(&f.webhookAddr, "webhook-bind-address", ":9443",
		"Address the admission webhooks (validating, and mutating: it records who asks) listen on; empty disables them, "+
			"and then no execution runs (none gets a requester recorded).")
	flag.StringVar(&f.webhookCertDir, "webhook-cert-dir", "",
		"Directory with tls.crt and tls.key for the webhook (re-read when they change). Empty: the controller manages its own certificate in --webhook-secret.")
	flag.StringVar(&f.namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"Namespace of the controller, its webhook Service and certificate Secret (default $POD_NAMESPACE).")
	flag.StringVar(&f.webhookSecret, "webhook-secret", "drplan-webhook-tls", "Secret holding the self-managed webhook CA and certificate.")
	flag.StringVar(&f.webhookService, "webhook-service", "drplan-webhook", "Service through which the API server reaches the webhook.")
	flag.StringVar(&f.webhookConfig, "webhook-configuration", "drplan-controller",
		"Name of the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration whose CA bundle the controller keeps current (self-managed certificate only).")
	flag.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Address of /metrics, /healthz and /readyz; empty disables them.")
	flag.BoolVar(&f.leaderElect, "leader-elect", false,
		"Run only while holding the Lease --leader-election-id in --namespace, so that several replicas can run (one leads; all serve the webhook).")
	flag.StringVar(&f.leaderID, "leader-election-id", "drplan-controller", "Name of the leader election Lease.")
	flag.StringVar(&f.podName, "pod-name", os.Getenv("POD_NAME"),
		"Name of this replica's Pod in --namespace (default $POD_NAME): with --leader-elect, a replica whose Pod is being deleted does not take the lead. Empty: not checked.")
	flag.StringVar(&f.httpDenyCIDRs, "http-deny-cidrs", actions.DefaultHTTPDenyCIDRs,
		"Comma-separated CIDRs (or addresses) HTTP actions may not connect to, unless --http-allow-cidrs holds the address: checked on the resolved address "+
			"of every connection, redirects included. The default is this host, loopback, link-local and the cloud metadata addresses; empty refuses none.")
	flag.StringVar(&f.httpAllowCIDRs, "http-allow-cidrs", "",
		"Comma-separated CIDRs (or addresses) exempt from --http-deny-cidrs: allow wins.")
	flag.StringVar(&f.httpDenyHosts, "http-deny-hosts", "",
		"Comma-separated host names (NAME or *.DOMAIN) that HTTP actions may not call, unless --http-allow-hosts holds the name: matched against the URL's host "+
			"(each redirect's too) before it is resolved.")
	flag.StringVar(&f.httpAllowHosts, "http-allow-hosts", "",
		"Comma-separated host names (NAME or *.DOMAIN) exempt from --http-deny-hosts (not from --http-deny-cidrs): allow wins.")
	flag.StringVar(&f.logFormat, "log-format", "text", "Log format: text (klog's key=value) or json.")
	flag.Parse()
	return f
}

// setLogFormat makes klog write text (its default) or JSON lines.
func setLogFormat(format string) error {
	switch format {
	case "text":
		return nil
	case "json":
		verbosity := 0
		if f := flag.Lookup("v"); f != nil {
			verbosity, _ = strconv.Atoi(f.Value.String())
		}
		logger, _ := logsjson.NewJSONLogger(logsapi.VerbosityLevel(verbosity), zapcore.Lock(os.Stdout), zapcore.Lock(os.Stderr), nil)
		klog.SetLogger(logger)
		return nil
	}
	return fmt.Errorf("--log-format must be text or json, not %q", format)
}

// options turn the flags into the cluster config and the process's options, opening the listeners
// they name.
func (f *flags) options() (*rest.Config, app.Options, error) {
	opts := app.Options{
		Workers: f.workers, ActionWorkers: f.actionWorkers, ShutdownGrace: f.grace, APIRetryTimeout: f.apiRetry, JobTimeout: f.jobTO,
		QPS: float32(f.qps), Burst: f.burst, RulesFile: f.rulesFile,
	}
	var err error
	if opts.Policy, err = f.policy(); err != nil {
		return nil, opts, err
	}
	if opts.HTTPEgress, err = actions.ParseEgressPolicy(f.httpDenyCIDRs, f.httpAllowCIDRs, f.httpDenyHosts, f.httpAllowHosts); err != nil {
		return nil, opts, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return nil, opts, fmt.Errorf("loading the cluster config: %w", err)
	}
	if opts.Webhook, err = f.webhook(); err != nil {
		return nil, opts, err
	}
	if opts.MetricsListener, err = listen(f.metricsAddr, "the metrics listener"); err != nil {
		return nil, opts, err
	}
	if opts.LeaderElection, err = f.leaderElection(); err != nil {
		return nil, opts, err
	}
	return cfg, opts, nil
}

// policy is how plans may act: --plans-without-service-account (or the deprecated
// --require-service-account), --refuse-cross-namespace-workflows, and the controller's own
// objects (its namespace, webhook configurations and ClusterRole).
func (f *flags) policy() (access.Policy, error) {
	without, err := access.ParseWithoutServiceAccount(f.withoutSA)
	if err != nil {
		return access.Policy{}, fmt.Errorf("--plans-without-service-account: %w", err)
	}
	if f.requireSA {
		if f.withoutSA != access.RequesterChecked && f.withoutSA != access.RefusePlans {
			return access.Policy{}, fmt.Errorf("--require-service-account (deprecated) contradicts --plans-without-service-account=%s: give only the latter", f.withoutSA)
		}
		without.Refuse = true
	}
	var unrecorded []string
	for _, ns := range strings.Split(f.unrecorded, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			unrecorded = append(unrecorded, ns)
		}
	}
	return access.Policy{WithoutServiceAccount: without, RefuseCrossNamespaceWorkflows: f.refuseCrossNamespace, UnrecordedNamespaces: unrecorded,
		Protected: access.Protected{Namespace: f.namespace, WebhookConfiguration: f.webhookConfig, ClusterRole: f.clusterRole}}, nil
}

// webhook is the admission webhook's options, nil when it is disabled.
func (f *flags) webhook() (*app.WebhookOptions, error) {
	if f.webhookAddr == "" {
		return nil, nil
	}
	if f.webhookCertDir == "" && f.namespace == "" {
		return nil, errors.New("a self-managed webhook certificate needs --namespace (or $POD_NAMESPACE); or give --webhook-cert-dir, or disable the webhook with --webhook-bind-address=''")
	}
	ln, err := listen(f.webhookAddr, "the webhook's listener")
	if err != nil {
		return nil, err
	}
	return &app.WebhookOptions{Listener: ln, CertDir: f.webhookCertDir, Namespace: f.namespace,
		SecretName: f.webhookSecret, ServiceName: f.webhookService, ConfigName: f.webhookConfig,
		QPS: float32(f.webhookQPS), Burst: f.webhookBurst}, nil
}

// leaderElection is the leader election's options, nil without --leader-elect.
func (f *flags) leaderElection() (*app.LeaderElectionOptions, error) {
	if !f.leaderElect {
		return nil, nil
	}
	if f.namespace == "" {
		return nil, errors.New("--leader-elect needs --namespace (or $POD_NAMESPACE) for its Lease")
	}
	return &app.LeaderElectionOptions{Namespace: f.namespace, Name: f.leaderID, Pod: f.podName}, nil
}

// listen opens a TCP listener on addr; an empty addr means none (nil).
func listen(addr, what string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return ln, nil
}
