# The README's two commands: `make demo` (set up, export, stream) and `make test` (set up, test).
VENV := .venv/bin
MODEL ?= pocket_k
TARGET ?= cortex-m7

.PHONY: setup demo test test-fast test-arm64 clean

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

# The runtime's test tier on a Debian bookworm arm64 userland under qemu-user (Raspberry Pi 4 CPU).
test-arm64: setup
	bash scripts/arm64_tier.sh
