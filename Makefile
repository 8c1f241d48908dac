# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch 2.14.1 + torchvision 0.29.1 is the pair that installs from this machine's disk and
# imports together (see README); pip, not uv, so the local files are used.
TORCH   := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,ray]'
	@# headless Chromium for the HTML report's browser test (Debian's package; root + apt only)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed (no root / apt-get): the HTML report's browser test will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dnnmap analyze resnet50 --hardware h100-sxm5 --precision bf16 --batch 1 --top 12
	$(BIN)/dnnmap compare resnet50 --hardware all --precision bf16 --batch 1

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build dist *.egg-info
