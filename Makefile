# The README's two commands: `make demo` (set up, export, stream) and `make test` (set up, test).
VENV := .venv/bin
MODEL ?= pocket_k
TARGET ?= cortex-m7

.PHONY: setup demo test test-fast bench clean

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/edge-export $(MODEL) --target $(TARGET)
	$(VENV)/edge-run --model dist/$(MODEL)-$(TARGET) --source 'sim://$(MODEL)?k=6.2&speed=20' --duration 60 --out sessions/demo

test: setup
	$(VENV)/python -m pytest

test-fast: setup
	$(VENV)/python -m pytest -m "not backend"

clean:
	rm -rf dist sessions build *.egg-info
