// Command drplan-controller runs disaster-recovery plans declared as DRWorkflow, DRPlan and
// DRPlanExecution resources. It uses --kubeconfig when given, else the in-cluster config.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	logsjson "k8s.io/component-base/logs/json"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/controller"
	"github.com/bkbcs/drplan-controller/rules"
)

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "Path to a kubeconfig; empty means the in-cluster config.")
	workers := flag.Int("workers", 4, "Number of objects synced at once.")
	actionWorkers := flag.Int("action-workers", 64, "Number of actions run at once, across all executions.")
	rulesFile := flag.String("rules-file", "",
		"YAML list of {name, expression, message} replacing built-in CEL rules (StageReady, StageBlocked, PlanLock, RevertEligible) by name; see docs/rules.md.")
	qps := flag.Float64("kube-api-qps", controller.DefaultQPS, "Client-side limit of API requests per second.")
	burst := flag.Int("kube-api-burst", controller.DefaultBurst, "Client-side burst of API requests.")
	grace := flag.Duration("shutdown-grace", 20*time.Second,
		"How long actions in flight may finish after SIGTERM; their results are written and nothing new starts. Keep it below the pod's terminationGracePeriodSeconds.")
	requireSA := flag.Bool("require-service-account", false,
		"Run only plans that name spec.serviceAccountName, so every side effect is bounded by that ServiceAccount's RBAC. "+
			"Without it, a plan without a ServiceAccount acts with the controller's own rights.")
	webhookAddr := flag.String("webhook-bind-address", ":9443",
		"Address the validating admission webhook listens on; empty disables it (the controller's own checks remain).")
	webhookCertDir := flag.String("webhook-cert-dir", "",
		"Directory with tls.crt and tls.key for the webhook (re-read when they change). Empty: the controller manages its own certificate in --webhook-secret.")
	namespace := flag.String("namespace", os.Getenv("POD_NAMESPACE"),
		"Namespace of the controller, its webhook Service and certificate Secret (default $POD_NAMESPACE).")
	webhookSecret := flag.String("webhook-secret", "drplan-webhook-tls", "Secret holding the self-managed webhook CA and certificate.")
	webhookService := flag.String("webhook-service", "drplan-webhook", "Service through which the API server reaches the webhook.")
	webhookConfig := flag.String("webhook-configuration", "drplan-controller",
		"ValidatingWebhookConfiguration whose CA bundle the controller keeps current (self-managed certificate only).")
	metricsAddr := flag.String("metrics-bind-address", ":8080", "Address of /metrics, /healthz and /readyz; empty disables them.")
	leaderElect := flag.Bool("leader-elect", false,
		"Run only while holding the Lease --leader-election-id in --namespace, so that several replicas can run (one leads; all serve the webhook).")
	leaderID := flag.String("leader-election-id", "drplan-controller", "Name of the leader election Lease.")
	logFormat := flag.String("log-format", "text", "Log format: text (klog's key=value) or json.")
	flag.Parse()
	if *logFormat == "json" {
		verbosity := 0
		if f := flag.Lookup("v"); f != nil {
			verbosity, _ = strconv.Atoi(f.Value.String())
		}
		logger, _ := logsjson.NewJSONLogger(logsapi.VerbosityLevel(verbosity), zapcore.Lock(os.Stdout), zapcore.Lock(os.Stderr), nil)
		klog.SetLogger(logger)
	} else if *logFormat != "text" {
		fmt.Fprintf(os.Stderr, "drplan-controller: --log-format must be text or json, not %q\n", *logFormat)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())

	var decide *rules.Rules
	if *rulesFile != "" {
		var err error
		if decide, err = rules.LoadRules(*rulesFile); err != nil {
			fmt.Fprintf(os.Stderr, "drplan-controller: %v\n", err)
			os.Exit(1)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "drplan-controller: loading the cluster config: %v\n", err)
		os.Exit(1)
	}
	opts := controller.Options{
		Workers: *workers, ActionWorkers: *actionWorkers, RequireServiceAccount: *requireSA, ShutdownGrace: *grace,
		QPS: float32(*qps), Burst: *burst, Rules: decide,
	}
	if *webhookAddr != "" {
		if *webhookCertDir == "" && *namespace == "" {
			fmt.Fprintln(os.Stderr, "drplan-controller: a self-managed webhook certificate needs --namespace (or $POD_NAMESPACE); or give --webhook-cert-dir, or disable the webhook with --webhook-bind-address=''")
			os.Exit(1)
		}
		ln, err := net.Listen("tcp", *webhookAddr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drplan-controller: the webhook's listener: %v\n", err)
			os.Exit(1)
		}
		opts.Webhook = &controller.WebhookOptions{Listener: ln, CertDir: *webhookCertDir, Namespace: *namespace,
			SecretName: *webhookSecret, ServiceName: *webhookService, ConfigName: *webhookConfig}
	}
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drplan-controller: the metrics listener: %v\n", err)
			os.Exit(1)
		}
		opts.MetricsListener = ln
	}
	if *leaderElect {
		if *namespace == "" {
			fmt.Fprintln(os.Stderr, "drplan-controller: --leader-elect needs --namespace (or $POD_NAMESPACE) for its Lease")
			os.Exit(1)
		}
		opts.LeaderElection = &controller.LeaderElectionOptions{Namespace: *namespace, Name: *leaderID}
	}
	if err := controller.RunWithConfig(ctx, cfg, opts); err != nil {
		fmt.Fprintf(os.Stderr, "drplan-controller: %v\n", err)
		os.Exit(1)
	}
}
