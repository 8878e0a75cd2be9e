# cnnlab: `make demo` and `make test` set everything up on a fresh machine (Python >= 3.10, pip).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_WHEELS := ^((torch|torchvision|triton)==|(nvidia|cuda)-)
# Two pytest workers, one torch thread each: three took 554 s against two's 483 s on 2 cores (one clone and venv,
# back to back, idle); the waits on servers and child processes do not pay for the third's contention.
WORKERS ?= 2

.PHONY: demo test bench install browser clean

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools  # torch needs a newer setuptools than a new venv has
	# The lock pins every package (torch==2.14.1, torchvision==0.29.1 and their CUDA wheels; a range would pull a
	# newer CUDA build), so nothing is left to resolve (--no-deps): it installs as two disjoint halves at once, one
	# a core (torch's wheels; the ~160 small packages, where pip's own work per package is the cost), and pip check
	# proves the whole consistent. 80 s against 115 s for one call, idle. --no-compile: pip byte-compiled every file
	# of torch and friends, most never imported; the last line compiles what cnnlab and its tests import, once, even
	# where PYTHONDONTWRITEBYTECODE is set (there, without it, each new process would compile torch again).
	grep -E '$(TORCH_WHEELS)' requirements/lock.txt > $(VENV)/lock-torch.txt
	grep -vE '$(TORCH_WHEELS)' requirements/lock.txt > $(VENV)/lock-rest.txt
	$(PY) -m pip install -q --no-compile --no-deps -r $(VENV)/lock-torch.txt & torch=$$!; \
	  $(PY) -m pip install -q --no-compile --no-deps -r $(VENV)/lock-rest.txt && wait $$torch
	$(PY) -m pip install -q --no-compile --no-deps -e .
	$(PY) -m pip check
	$(PY) -c 'import sys; sys.dont_write_bytecode = False; import torch, torchvision, lightning, timm, torchmetrics, \
	  sklearn, matplotlib.pyplot, fastapi, uvicorn, onnxruntime, onnx, onnxscript, captum, cnnlab.cli'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cnnlab demo

# The web page is tested in a real headless Chromium: Debian's chromium and chromium-driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	    echo "note: no chromium/chromedriver and no root apt-get: the browser test will be skipped"; }

test: $(STAMP) browser
	$(PY) -m pytest -q -n $(WORKERS) --dist loadgroup --durations=15

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo runs .pytest_cache
