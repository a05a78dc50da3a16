# drplan-controller. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
GO ?= go
BIN := $(CURDIR)/bin
RUN_DIR := $(CURDIR)/.drplan
E2E_BACKEND ?= local
export E2E_BACKEND

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

IMAGE ?= drplan-controller:0.1.0

.PHONY: image
image: ## Build the controller image as a tarball (bin/drplan-controller-image.tar) without Docker; IMAGE names it.
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/linux/drplan-controller ./cmd/drplan-controller
	cd hack/tools/image && $(GO) run . -binary $(BIN)/linux/drplan-controller -tag $(IMAGE) -o $(BIN)/drplan-controller-image.tar

.PHONY: generate
generate: ## Regenerate deepcopy, CRD YAML, clientset, listers, informers and the Clusternet CRD copies.
	./hack/update-codegen.sh

.PHONY: verify
verify: ## Fail if generated code is stale, code is not gofmt'ed, or go vet complains.
	./hack/verify.sh

.PHONY: test
test: verify node-deps ## Every test, with the race detector: unit, e2e on the local control plane, and e2e on the node backend where this machine can run it.
	$(GO) test -race -count=1 -timeout 30m ./...
	@if problem=$$($(GO) run ./cmd/drplan-local node-check); then \
		echo "make test: the e2e suite on the node backend (E2E_BACKEND=node)"; \
		E2E_BACKEND=node $(GO) test -race -count=1 -timeout 30m ./test/e2e/; rc=$$?; \
		$(GO) run ./cmd/drplan-local node-cleanup; exit $$rc; \
	else \
		echo "make test: SKIPPED the e2e suite on the node backend (E2E_BACKEND=node): $$problem"; \
	fi

.PHONY: unit
unit: ## Unit tests only (no control plane).
	$(GO) test -race -count=1 -short ./...

.PHONY: e2e
e2e: $(if $(filter node,$(E2E_BACKEND)),node-deps) ## The e2e suite on the backend named by E2E_BACKEND: local (default), node (a real node on this host, as root) or kind.
	$(GO) test -race -count=1 -timeout 30m -v ./test/e2e/$(if $(filter node,$(E2E_BACKEND)),; rc=$$?; $(GO) run ./cmd/drplan-local node-cleanup; exit $$rc)

.PHONY: e2e-node
e2e-node: ## The e2e suite on the node backend: the controller installed by the chart, running as pods on a kubelet on this host.
	$(MAKE) e2e E2E_BACKEND=node

FUZZTIME ?= 2m

.PHONY: fuzz
fuzz: ## Every fuzz target for FUZZTIME (default 2m) each, one after another (each uses every core); their seed corpora also run in make test.
	@set -e; for pkg in $$($(GO) list ./... | grep -v /test/); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "make fuzz: $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

.PHONY: bench
bench: ## Benchmarks on the local control plane (engine throughput, parallelism, first-action latency); prints figures.
	$(GO) test -run '^$$' -bench . -benchtime 5x -count 1 ./test/e2e/
	$(GO) test -run '^$$' -bench . -benchmem ./actions/ ./rules/ ./admission/ ./templates/

# NODE=1 adds a real node on this host (containerd, kubelet, kube-scheduler): Jobs run pods.
NODE ?=
NODE_FLAG = $(if $(filter-out 0,$(NODE)),--node)

.PHONY: run
run: build $(if $(NODE_FLAG),node-deps) ## Start a local control plane and run the controller in the foreground (Ctrl-C stops all); NODE=1 adds a real node.
	$(BIN)/drplan-local run --dir $(RUN_DIR) $(NODE_FLAG)

.PHONY: up
up: build $(if $(NODE_FLAG),node-deps) ## Start a local control plane and the controller in the background (.drplan/); NODE=1 adds a real node.
	$(BIN)/drplan-local up --dir $(RUN_DIR) $(NODE_FLAG)

.PHONY: node-deps
node-deps: ## Install the Debian packages the node mode needs (containerd, runc, CNI plugins, busybox-static, ...), if missing.
	./hack/node-deps.sh

.PHONY: down
down: ## Stop what `make up` or `make run` started.
	@if [ -x $(BIN)/drplan-local ]; then $(BIN)/drplan-local down --dir $(RUN_DIR); else $(GO) run ./cmd/drplan-local down --dir $(RUN_DIR); fi

.PHONY: kubectl
kubectl: ## Build (or find cached) kubectl v1.37.2 and print its path.
	@$(GO) run ./cmd/drplan-local kubectl-path

.PHONY: clean
clean: ## Remove bin/ and .drplan/ (stop first with make down).
	rm -rf $(BIN) $(RUN_DIR)
