"""Boot firmware in qemu-system-arm (the QEMU machine of its core: cores.toml) with UART0 on a unix socket.

    with QemuDevice(elf) as dev:          # dev.uart_path: connect a socket there (server=on,wait=on)
        sock = dev.connect()              # or let edge_runtime's qemu:// transport connect
    dev.stop()                            # terminate -> kill, always bounded

The machine is the one the ELF was linked for (its build record, <elf>.json, written by build_engine),
unless given. `-icount shift=0` (default) makes SysTick count instructions (one tick = 1e9 / its clock),
which the firmware reports in RESULT (counter_kind 1). `plugin=True` adds our TCG plugin for exact
per-inference and per-layer instruction counts, read back with `dev.plugin_records()`.

Lifetime: the emulated device runs as long as the work does. Nothing bounds its life by wall clock (a fixed
`timeout` around QEMU once killed every bench longer than ten minutes); each request to it has its own
timeout on the host side (DeviceLink, FirmwareClient), which is what catches a hung guest. QEMU dies with the
thread that started it (PR_SET_PDEATHSIG), so a host killed with SIGKILL leaves no emulator behind.
`QemuDevice(..., timeout=S)` still bounds one run by wall clock where a caller wants that (one-shot runs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ecgedge.errors import FirmwareError

PLUGIN_SRC = Path(__file__).resolve().parent / "plugin" / "ecg_icount.c"


def build_plugin(out_dir: str | Path | None = None) -> Path:
    """Compile the instruction-count plugin with the host gcc (cached next to the cache dir)."""
    from ecgedge.firmware_bridge.build import cache_dir

    gcc = shutil.which("gcc")
    if gcc is None:
        raise FirmwareError("gcc not found on PATH: needed to build the QEMU instruction-count plugin; install it "
                            "(apt-get install gcc)")
    import hashlib

    key = hashlib.sha256(PLUGIN_SRC.read_bytes()).hexdigest()[:16]
    out = Path(out_dir) if out_dir else cache_dir() / "plugin"
    out.mkdir(parents=True, exist_ok=True)
    so = out / f"libecg_icount-{key}.so"
    if not so.exists():
        tmp = so.with_suffix(".tmp.so")
        r = subprocess.run([gcc, "-O2", "-shared", "-fPIC", str(PLUGIN_SRC), "-o", str(tmp)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise FirmwareError(f"plugin build failed: {r.stderr[-2000:]}")
        tmp.replace(so)
    return so


def plugin_marks(elf: str | Path) -> list[tuple[int, int]]:
    """(address, id) markers: ecg_model_invoke -> -1, ecg_model_done -> -2, ecg_layer_NNN -> NNN."""
    from ecgedge.firmware_bridge.build import elf_symbols

    syms = elf_symbols(Path(elf))
    marks = []
    for name, (addr, _) in syms.items():
        if name == "ecg_model_invoke":
            marks.append((addr, -1))
        elif name == "ecg_model_done":
            marks.append((addr, -2))
        elif name.startswith("ecg_layer_") and name[10:].isdigit():
            marks.append((addr, int(name[10:])))
    if not any(m[1] == -1 for m in marks) or not any(m[1] == -2 for m in marks):
        raise FirmwareError(f"{elf}: no ecg_model_invoke / ecg_model_done symbols (not an ecgedge firmware?)")
    return marks


def parse_plugin_log(text: str) -> list[dict]:
    recs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "inference":
            layers = {}
            for item in parts[5:]:
                k, v = item.split(":")
                layers[int(k)] = int(v)
            recs.append({"inference": int(parts[1]), "total": int(parts[3]), "layers": layers})
    return recs


def elf_machine(elf: str | Path) -> str:
    """The QEMU machine an ELF was linked for, from its build record (<elf>.json, build_engine)."""
    rec = Path(elf).with_suffix(".json")
    try:
        machine = json.loads(rec.read_text()).get("machine")
    except (OSError, ValueError):
        machine = None
    if not machine:
        raise FirmwareError(f"{elf}: no build record {rec.name} naming its QEMU machine; pass the machine")
    return machine


PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn for the emulator: SIGKILL it when the thread that started it ends (Linux prctl); a no-op
    where prctl is missing. The function is looked up before the fork, so the child only makes the call."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return set_pdeathsig


class QemuDevice:
    def __init__(self, elf: str | Path, machine: str | None = None, icount: bool = True,
                 plugin: bool | str | Path = False, timeout: float | None = None, boot_timeout: float = 20.0,
                 monitor: bool = False):
        self.elf = Path(elf)
        if not self.elf.exists():
            raise FirmwareError(f"firmware ELF {self.elf} does not exist")
        self.qemu = shutil.which("qemu-system-arm")
        if self.qemu is None:
            raise FirmwareError("qemu-system-arm not found on PATH; install it (apt-get install qemu-system-arm)")
        self.machine = machine or elf_machine(self.elf)
        self.icount = icount
        self.timeout = timeout
        self.boot_timeout = boot_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="ecg-qemu-"))
        self.uart_path = str(self._dir / "uart0.sock")
        self.plugin_log = self._dir / "icount.log" if plugin else None
        self.monitor_path = str(self._dir / "monitor.sock") if monitor else None
        self._plugin = plugin
        self.proc: subprocess.Popen | None = None
        self._log = self._dir / "qemu.log"

    def command(self) -> list[str]:
        mon = f"unix:{self.monitor_path},server=on,wait=off" if self.monitor_path else "none"
        # no wall-clock bound unless asked for: requests are bounded by the host, never the device's life
        bound = ["timeout", "-k", "5", f"{float(self.timeout):g}"] if self.timeout else []
        cmd = [*bound, self.qemu, "-M", self.machine, "-nographic",
               "-monitor", mon, "-semihosting-config", "enable=on,target=native",
               "-chardev", f"socket,id=u0,path={self.uart_path},server=on,wait=on", "-serial", "chardev:u0",
               "-kernel", str(self.elf)]
        if self.icount:
            cmd += ["-icount", "shift=0"]
        if self._plugin:
            so = build_plugin() if self._plugin is True else Path(self._plugin)
            args = [f"out={self.plugin_log}"] + [f"mark={a:#x}:{i}" for a, i in plugin_marks(self.elf)]
            cmd += ["-plugin", ",".join([str(so)] + args)]
        return cmd

    def start(self) -> "QemuDevice":
        if self.proc is not None:
            return self
        self._dir.mkdir(parents=True, exist_ok=True)  # (again, after a stop)
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self._dir, preexec_fn=_die_with_parent())
        deadline = time.monotonic() + self.boot_timeout
        while not self._listening():
            if self.proc.poll() is not None:
                raise FirmwareError(f"qemu exited with {self.proc.returncode} before opening the UART socket: "
                                    f"{self._log.read_text(errors='replace')[-1500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise FirmwareError(f"qemu did not open {self.uart_path} within {self.boot_timeout} s")
            time.sleep(0.02)
        return self

    def _listening(self) -> bool:
        """The UART socket exists and QEMU is listening on it (so a client connect cannot be refused)."""
        if not Path(self.uart_path).exists():
            return False
        try:
            table = Path("/proc/net/unix").read_text()
        except OSError:
            return True
        for line in table.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == self.uart_path:
                return bool(int(parts[3], 16) & 0x10000)   # __SO_ACCEPTCON: listening
        return False

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A connected socket to UART0 (QEMU waits for it before running the guest)."""
        if self.proc is None:
            self.start()
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.uart_path)
                return s
            except (ConnectionRefusedError, FileNotFoundError) as e:
                s.close()
                if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                    raise FirmwareError(f"cannot connect to QEMU UART {self.uart_path}: {e}; "
                                        f"qemu log: {self.log_text()[-1500:]}") from e
                time.sleep(0.05)

    def read_memory(self, address: int, size: int, timeout: float = 30.0) -> bytes:
        """`size` bytes of guest memory at `address` (the CPU's view: Secure aliases included), through
        the QEMU monitor's memsave (QemuDevice(..., monitor=True))."""
        if not self.monitor_path or self.proc is None:
            raise FirmwareError("read_memory needs a running QemuDevice started with monitor=True")
        dump = self._dir / f"mem-{address:x}-{size}.bin"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.monitor_path)

            def prompt() -> str:
                buf = b""
                while not buf.endswith(b"(qemu) "):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                return buf.decode(errors="replace")

            prompt()
            # a relative file name (QEMU runs in self._dir): the monitor would read "/" as a division
            s.sendall(f"memsave {address:#x} {size} {dump.name}\n".encode())
            reply = prompt()
        if not dump.exists() or dump.stat().st_size != size:
            raise FirmwareError(f"memsave {address:#x} {size} failed: {reply[-300:]}")
        data = dump.read_bytes()
        dump.unlink()
        return data

    def plugin_records(self) -> list[dict]:
        if self.plugin_log is None or not self.plugin_log.exists():
            return []
        return parse_plugin_log(self.plugin_log.read_text())

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if not self._plugin:  # its socket and log go with it (a plugin's log is read after stop: see __del__)
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        try:
            self.stop()
            shutil.rmtree(self._dir, ignore_errors=True)
        except Exception:
            pass


def run_model(elf: str | Path, inputs, timeout: float = 600.0, plugin: bool = True):
    """Run a firmware ELF on int8 input windows in its QEMU machine: (outputs [n, n_out] int8, the plugin's
    per-inference records: exact instructions in total and per layer). Outputs longer than a RESULT frame
    carries (the firmware answers ERROR after the inference) are read from its `ecg_outputs` buffer
    through the QEMU monitor. Used by benchmarks and by verification tools."""
    import numpy as np

    from ecgedge.firmware_bridge import protocol as P
    from ecgedge.firmware_bridge.build import elf_symbols
    from ecgedge.firmware_bridge.client import FirmwareClient

    addr, size = elf_symbols(Path(elf))["ecg_outputs"]
    outs = []
    with QemuDevice(elf, plugin=plugin, timeout=timeout + 60, monitor=True) as dev:
        c = FirmwareClient(sock=dev.connect())
        c.hello()
        for x in inputs:
            c.load_input(np.asarray(x, np.int8), timeout=min(timeout, 120.0))   # busy hosts: generous per-ACK
            f = c.request(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)), None, timeout)
            if f.type == P.MsgType.RESULT:
                outs.append(np.asarray(P.unpack_result(f.payload).outputs, np.int8))
            else:
                outs.append(np.frombuffer(dev.read_memory(addr, size), np.int8))
        c.close()
        dev.stop()   # the plugin writes its records when QEMU exits
        return np.array(outs, np.int8).reshape(len(outs), -1), dev.plugin_records()

