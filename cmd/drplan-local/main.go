// Command drplan-local runs the product on this machine against a local real control plane
// (etcd + kube-apiserver built from the Go module proxy, no Docker):
//
//	drplan-local run  --dir .drplan   control plane + controller in the foreground; Ctrl-C stops all
//	drplan-local run  --node          the same with a real node on this host (pods run; needs root)
//	drplan-local up   --dir .drplan   the same in the background; returns once ready
//	drplan-local down --dir .drplan   stops what run or up started (and restores the host after --node)
//	drplan-local kubectl-path         builds (or finds) kubectl of the server's version, prints its path
//	drplan-local node-check           exits 0 if this host can run the node mode, else says why
//	drplan-local node-cleanup         tears down a node run whose process died without doing so
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/cmd/drplan-controller/app"
	"github.com/bkbcs/drplan-controller/controlplane"
	"github.com/bkbcs/drplan-controller/crds"
)

const usage = `usage: drplan-local run|up|down [--dir DIR] [--controller-manager] [--node]
       drplan-local kubectl-path
       drplan-local node-check                       exits 0 if this host can run the node mode, else prints why
       drplan-local node-cleanup                     tears down a node run whose process died (a killed test), restoring the host
       drplan-local sink [--addr 127.0.0.1:8080]   an HTTP endpoint for the guide's webhooks: answers 200, prints each request`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	dir := fs.String("dir", ".drplan", "Run directory: kubeconfig, certificates, etcd data, logs, pid files.")
	kcm := fs.Bool("controller-manager", false, "Also run kube-controller-manager (namespace deletion, garbage collection, Jobs' pods).")
	node := fs.Bool("node", false, "Also run a real node on this host (containerd, kubelet, kube-scheduler; implies --controller-manager), so that Jobs run pods. Needs root; `down` restores the host.")
	addr := fs.String("addr", "127.0.0.1:8080", "sink: the address to listen on.")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[2:])

	abs, err := filepath.Abs(*dir)
	if err == nil {
		switch cmd {
		case "run":
			err = run(abs, *kcm, *node)
		case "up":
			err = up(abs, *kcm, *node)
		case "node-cleanup":
			var cleaned string
			if cleaned, err = controlplane.CleanupOrphanedNode(); cleaned != "" && err == nil {
				fmt.Println("drplan-local: tore down the node run left in", cleaned, "and restored the host")
			}
		case "node-check":
			if problem := controlplane.NodeHostProblem(); problem != "" {
				fmt.Println(problem)
				os.Exit(1)
			}
		case "down":
			err = down(abs)
		case "kubectl-path":
			err = kubectlPath()
		case "sink":
			err = sink(*addr)
		default:
			err = fmt.Errorf("unknown command %q\n%s", cmd, usage)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "drplan-local %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func readyFile(dir string) string { return filepath.Join(dir, "ready") }
func pidFile(dir string) string   { return filepath.Join(dir, "drplan-local.pid") }
func logFile(dir string) string   { return filepath.Join(dir, "drplan-local.log") }

// sink answers every request 200 and prints it: a stand-in for the guide's notification
// webhooks and failover APIs when trying the examples on this machine.
func sink(addr string) error {
	fmt.Printf("drplan-local sink: answering http://%s/ (Ctrl-C stops)\n", addr)
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		fmt.Printf("%s %s %s\n%s\n\n", time.Now().Format(time.TimeOnly), r.Method, r.URL, body)
		_, _ = w.Write([]byte(`{"ok": true}`))
	}))
}

// webhookConfigName names the validating and mutating webhook configurations of the local run.
const webhookConfigName = "drplan-controller"

// controllerUser is the controller's own user in the local run: a master like the admin (this
// is a single-user development cluster), but another user, so that the admission webhook tells
// its writes from yours and records you as the requester of what you run.
const controllerUser = "drplan-controller"

// run starts the control plane and runs the controller in this process until SIGINT or SIGTERM.
func run(dir string, kcm, node bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_ = os.Remove(readyFile(dir))

	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir:               dir,
		CRDs:              append(crds.YAML(), crds.ClusternetYAML()...),
		ControllerManager: kcm,
		Node:              node,
		Progress:          os.Stdout,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("drplan-local: stopping the control plane")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "drplan-local:", err)
		}
		_ = os.Remove(readyFile(dir))
	}()

	ready := func() {
		_ = os.WriteFile(readyFile(dir), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644)
		fmt.Printf("drplan-local: ready. Use the cluster from another terminal with:\n\n    export KUBECONFIG=%s\n    export PATH=%s:$PATH   # kubectl %s\n\n",
			cp.KubeconfigPath, filepath.Dir(cp.Binaries.Kubectl), controlplane.KubeVersion)
		if node {
			fmt.Printf("drplan-local: node %s runs pods: use image %s (made offline; nothing is pulled), and reach this host from pods at %s (no cluster DNS, no kube-proxy).\n\n",
				controlplane.NodeName, controlplane.BusyboxImage, controlplane.NodeGateway)
		}
	}
	// The admission webhooks, served by the controller on loopback and registered by URL.
	ln, certDir, url, err := cp.WebhookServing("")
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		return err
	}
	client := admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: cp.CACertPEM}
	// The controller's own status writes skip the webhook (matchConditions), so they pass while
	// it is not serving: the shutdown grace's last writes.
	if err := admission.Register(ctx, kube, admission.WebhookConfiguration(webhookConfigName, client, controllerUser),
		admission.MutatingWebhookConfiguration(webhookConfigName, client, controllerUser)); err != nil {
		return err
	}
	controller, err := cp.ClientConfig(controllerUser, "system:masters")
	if err != nil {
		return err
	}
	// No HTTP egress policy (Options.HTTPEgress is zero): the guide's sink listens on loopback,
	// which the chart's default refuses.
	err = app.RunWithConfig(klog.NewContext(ctx, klog.Background()), controller, app.Options{Workers: 4, Ready: ready,
		Webhook: &app.WebhookOptions{Listener: ln, CertDir: certDir}})
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// up runs `run` as a background process of its own session and returns once it is ready,
// streaming its output meanwhile.
func up(dir string, kcm, node bool) error {
	if pid, ok := runningPID(dir); ok {
		return fmt.Errorf("already up (pid %d); use `make down` first", pid)
	}
	// Our pid and log files sit beside, not inside, the logs/ and pids/ folders that the
	// control plane's start wipes.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_ = os.Remove(readyFile(dir))
	logPath := logFile(dir)
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"run", "--dir", dir}
	if kcm {
		args = append(args, "--controller-manager")
	}
	if node {
		args = append(args, "--node")
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile(dir), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	follow, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer follow.Close()
	reader := bufio.NewReader(follow)
	for {
		copyLines(reader, os.Stdout)
		if _, err := os.Stat(readyFile(dir)); err == nil {
			copyLines(reader, os.Stdout)
			fmt.Printf("drplan-local: up; controller log %s, control-plane logs in %s; stop with `make down`\n",
				logPath, filepath.Join(dir, "logs"))
			return nil
		}
		select {
		case err := <-exited:
			copyLines(reader, os.Stdout)
			_ = os.Remove(pidFile(dir))
			return fmt.Errorf("the background process exited before it was ready (%v); see %s", err, logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// copyLines copies the complete lines available from r to w.
func copyLines(r *bufio.Reader, w io.Writer) {
	for {
		line, err := r.ReadString('\n')
		fmt.Fprint(w, line) // a partial line at EOF is printed now; its rest comes on the next call
		if err != nil {
			return
		}
	}
}

// down stops the background process started by up (which stops the controller and the control
// plane in order), then stops anything a crashed run left behind.
func down(dir string) error {
	if pid, ok := runningPID(dir); ok {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		deadline := time.Now().Add(60 * time.Second)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if processAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = os.Remove(pidFile(dir))
	_ = os.Remove(readyFile(dir))
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := controlplane.StopDir(dir); err != nil {
		return err
	}
	fmt.Println("drplan-local: down")
	return nil
}

// runningPID returns the PID of a live `drplan-local run` for dir, from its pid file.
func runningPID(dir string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !processAlive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	// Only our own `run` for this dir: a recycled PID must not be signalled.
	return pid, len(args) > 3 && filepath.Base(args[0]) == "drplan-local" && args[1] == "run" && args[3] == dir
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func kubectlPath() error {
	bins, err := controlplane.EnsureBinaries(context.Background(), os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(bins.Kubectl)
	return nil
}
