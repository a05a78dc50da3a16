package controlplane

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const widgetCRD = `
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.drplan.io
spec:
  group: test.drplan.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real control plane; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	began := time.Now()
	if _, err := ensureBinaries(ctx, testWriter{t}, true, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries ready in %s", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	cp, err := Start(ctx, Options{CRDs: [][]byte{[]byte(widgetCRD)}, ControllerManager: true, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start to ready (etcd, apiserver, CRD, controller-manager): %s", time.Since(began).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			cp.Stop()
		}
	}()

	crds, err := apiextensionsclient.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	crd, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets.test.drplan.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []apiextensionsv1.CustomResourceDefinitionConditionType{apiextensionsv1.Established, apiextensionsv1.NamesAccepted} {
		if !crdCondition(crd, want) {
			t.Errorf("CRD condition %s not true: %+v", want, crd.Status.Conditions)
		}
	}

	stdout, _, err := cp.Kubectl(ctx, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Client struct{ GitVersion, Major, Minor string } `json:"clientVersion"`
		Server struct{ GitVersion, Major, Minor string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("parse kubectl version: %v\n%s", err, stdout)
	}
	if v.Server.GitVersion != KubeVersion {
		t.Errorf("server gitVersion = %q, want %q", v.Server.GitVersion, KubeVersion)
	}
	if v.Client.Major != v.Server.Major || v.Client.Minor != v.Server.Minor || v.Client.Minor == "" {
		t.Errorf("client %s.%s (%s) does not match server %s.%s", v.Client.Major, v.Client.Minor, v.Client.GitVersion, v.Server.Major, v.Server.Minor)
	}

	// A custom resource round-trips through kubectl, so discovery already knows the new kind.
	if _, _, err := cp.KubectlInput(ctx, "apiVersion: test.drplan.io/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager works: its service-account controller creates "default".
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := cp.Kubectl(ctx, "get", "serviceaccount", "default", "-n", "default"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("controller-manager did not create the default service account: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	var pids []int
	for _, name := range []string{procControllerManager, procAPIServer, procEtcd} {
		b, err := os.ReadFile(pidPath(cp.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if !isOurs(pid, name, cp.Dir) {
			t.Fatalf("pid file of %s names pid %d, which is not running it", name, pid)
		}
		pids = append(pids, pid)
	}

	began = time.Now()
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
	for i, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", stopOrder[i], pid)
		}
	}
	if _, err := os.Stat(cp.Dir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s not removed: %v", cp.Dir, err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestDecodeCRDs(t *testing.T) {
	tests := []struct {
		name     string
		files    []string
		want     []string
		wantErrs string
	}{
		{"one file, leading separator", []string{widgetCRD}, []string{"widgets.test.drplan.io"}, ""},
		{"several docs and files", []string{widgetCRD + "\n---\n" + strings.ReplaceAll(widgetCRD, "widget", "gadget"), "---\n"},
			[]string{"widgets.test.drplan.io", "gadgets.test.drplan.io"}, ""},
		{"not a CRD", []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"}, nil, `got kind "ConfigMap"`},
		{"broken YAML", []string{"kind: [unclosed\n"}, nil, "decode CRD file 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files [][]byte
			for _, f := range tt.files {
				files = append(files, []byte(f))
			}
			crds, err := decodeCRDs(files)
			if tt.wantErrs != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrs) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErrs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range crds {
				names = append(names, c.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("decoded %v, want %v", names, tt.want)
			}
		})
	}
}
