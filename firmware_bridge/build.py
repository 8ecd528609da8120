"""Build the generated model + firmware for any Cortex-M core of cores.toml (QEMU machine ELF), or host
executables.

`build_engine(model, core, out_dir, optimized=True, program="verify"|"protocol", optimize="speed", machine=None,
             defines=None) -> BuildResult`
    the one build function, keyed by core (host, cortex-m0 ... cortex-m55; `model` is a package folder or a
    .tflite): the engine with a harness program - "verify" (edge-engine verify: input tensors from a file over
    semihosting, or stdin on the host) or "protocol" (the wire-protocol firmware of docs/protocol.md)
`build_firmware(package_dir, target, out_dir, ...)` the same for an MCU target of targets.toml (its engine_core)
`firmware_for_package(package_dir, target_or_core, ...) -> Path(elf)` (cached by model sha + sources + flags)
`build_host(package_dir_or_tflite, out_dir, program="run"|"serve"|"fuzz"|"codec", ...) -> Path`
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from ecgedge.contract.package import read_model
from ecgedge.errors import ConfigError, FirmwareError
from ecgedge.firmware_bridge.cores import (KERNEL_FEATURES, Core, Machine, get_core, get_machine, mcu_cores,
                                           resolve_core)

C_DIR = Path(__file__).resolve().parent / "c"
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
FW_VERSION = "0.1.0"
KERNELS = ["ecg_kernels_ref.c", "ecg_kernels_general.c", "ecg_kernels_lstm.c", "ecg_kernels_opt.c",
           "ecg_kernels_dsp.c", "ecg_kernels_c.c", "ecg_kernels_mve.c"]
APP = ["app.c", "protocol.c", "sha256.c"]
# the harness programs around the engine: sources of an MCU build (+ startup.c and the machine's linker script)
# and of a host build; "protocol" on an MCU adds the machine's HAL (hal_common.c + hal_<machine.hal>.c)
PROGRAMS = {"verify": {"mcu": ["verify_main.c"], "host": ["host_run.c"]},
            "protocol": {"mcu": APP + ["hal_common.c"], "host": None}}
COMMON_CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-Wno-unused-parameter", "-ffp-contract=off",
                 "-fno-strict-aliasing"]
FAULTS = ("ECG_FAULT_REQUANT_SHIFT", "ECG_FAULT_SWAP_OUTPUTS", "ECG_FAULT_INPUT_SCALE", "ECG_FAULT_DROP_SAMPLES",
          "ECG_FAULT_MODEL_HASH", "ECG_FAULT_UNALIGNED")
OPTIMIZE = ("speed", "size")   # speed: widened weights and pair tables where the kernels use them; size: int8 weights


@dataclass
class BuildResult:
    elf: Path                   # the firmware ELF (a host build: the executable)
    target: str                 # the MCU target of targets.toml, or the core's name for a bare core build
    optimized: bool
    text: int | None            # sizes: None for a host build
    data: int | None
    bss: int | None
    flash_bytes: int | None     # text + data (what goes to flash)
    ram_bytes: int | None       # data + bss (static RAM, stack/heap reserve excluded)
    arena_bytes: int
    const_bytes: int
    macs: int
    target_flash_bytes: int | None
    target_ram_bytes: int | None
    model_sha256: str
    defines: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    symbols: dict = field(default_factory=dict)   # name -> (address, size)
    core: str = "cortex-m7"
    machine: str | None = "mps2-an500"  # the QEMU machine the ELF is linked for (None: a host build)
    kernels: str = "dsp"
    optimize: str = "speed"
    program: str = "protocol"
    gen: object = field(default=None, repr=False, compare=False)   # codegen.Generated (not serialised)

    @property
    def path(self) -> Path:
        return self.elf

    def summary(self) -> str:
        if self.machine is None:
            return (f"{self.elf.name} (host, {self.kernels} kernels, optimise for {self.optimize}): arena "
                    f"{self.arena_bytes} B, constants {self.const_bytes} B")
        return (f"{self.elf.name} ({self.core}, {self.kernels} kernels, optimise for {self.optimize}, QEMU "
                f"{self.machine}): text {self.text} data {self.data} bss {self.bss} | flash {self.flash_bytes} / "
                f"{self.target_flash_bytes} B, static RAM {self.ram_bytes} / {self.target_ram_bytes} B, "
                f"arena {self.arena_bytes} B, constants {self.const_bytes} B")

    def to_dict(self) -> dict:
        gen, self.gen = self.gen, None
        try:
            d = asdict(self)
        finally:
            self.gen = gen
        d.pop("gen")
        d["elf"] = str(self.elf)
        return d


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        hint = {"arm-none-eabi-gcc": "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi",
                "qemu-system-arm": "apt-get install qemu-system-arm", "clang": "apt-get install clang",
                "gcc": "apt-get install gcc"}.get(tool, "see docs/troubleshooting.md")
        raise FirmwareError(f"{tool} not found on PATH; install it ({hint})")
    return path


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise FirmwareError(f"{what} failed (exit {r.returncode}): {' '.join(cmd[:3])} ...\n{r.stderr[-3000:]}")


def _define_flags(defines: dict | None) -> list[str]:
    out = []
    for k, v in sorted((defines or {}).items()):
        if v is None or v is False:
            continue
        out.append(f"-D{k}" if v is True else f"-D{k}={v}")
    return out


def _sizes(elf: Path, size_tool: str = "arm-none-eabi-size") -> tuple[int, int, int]:
    r = subprocess.run([_need(size_tool), "-A", str(elf)], capture_output=True, text=True, check=True)
    sec = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    text = sec.get(".vectors", 0) + sec.get(".text", 0) + sec.get(".ARM.exidx", 0)
    return text, sec.get(".data", 0), sec.get(".bss", 0)


def elf_symbols(elf: Path, nm: str = "arm-none-eabi-nm") -> dict[str, tuple[int, int]]:
    r = subprocess.run([_need(nm), "-S", "--defined-only", str(elf)], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTdDbBrR":
            out[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return out


def generate_into(package_dir, out_dir: Path, kernels: str = "dsp", optimize: str = "speed"):
    from ecgedge.firmware_bridge.codegen import generate, write_sources

    raw, manifest = read_model(package_dir)
    gen = generate(raw, manifest, kernels=kernels, optimize=optimize)
    write_sources(gen, out_dir)
    return gen, manifest


def check_optimize(optimize: str) -> str:
    if optimize not in OPTIMIZE:
        raise ConfigError(f"--optimize {optimize!r}: expected one of {', '.join(OPTIMIZE)}")
    return optimize


def firmware_core(target) -> Core:
    """The engine core of an MCU target (a targets.toml Target or its name); FirmwareError for any other
    target, before any work is done (edge-export --firmware refuses early)."""
    from ecgedge.targets import get_target

    tgt = get_target(target) if isinstance(target, str) else target
    if not tgt.is_mcu or not tgt.engine_core:
        raise FirmwareError(f"target {tgt.name!r} ({tgt.kind}, runtime {tgt.runtime}) has no firmware build; "
                            f"firmware is built for MCU targets with an engine_core in targets.toml: "
                            f"{', '.join(firmware_targets())}")
    return get_core(tgt.engine_core)


def firmware_targets() -> list[str]:
    """The built-in targets (ecgedge/targets.toml) with a firmware build: MCU profiles with an engine_core."""
    from ecgedge.targets import builtin_targets
    return [t.name for t in builtin_targets().values() if t.is_mcu and t.engine_core]


def machine_for(core: Core, machine: str | None = None) -> Machine:
    """The QEMU machine a core's build is linked for (default: the core's qemu_machine)."""
    if core.is_host:
        raise FirmwareError("core 'host' has no QEMU machine; use build_host")
    name = machine or core.qemu_machine
    if name not in core.machines:
        raise FirmwareError(f"QEMU machine {name!r} does not run {core.name} builds; supported: "
                            f"{', '.join(core.machines)}")
    return get_machine(name)


def linker_script(m: Machine, out: Path) -> Path:
    vec = m.vectors
    text = string.Template((C_DIR / "ecgedge.ld.in").read_text()).substitute(
        machine=m.name, code_origin=f"{m.code.origin:#010x}", code_length=f"{m.code.length:#x}",
        ram_origin=f"{m.ram.origin:#010x}", ram_length=f"{m.ram.length:#x}",
        stack_bytes=f"{m.stack_bytes:#x}", heap_bytes=f"{m.heap_bytes:#x}",
        vectors_memory=(f"  VECTORS (rx) : ORIGIN = {vec.origin:#010x}, LENGTH = {vec.length:#x}\n" if vec else ""),
        vectors_region="VECTORS" if vec else "CODE")
    path = out / f"{m.name}.ld"
    path.write_text(text)
    return path


def _check_compiler_features(gcc: str, core: Core) -> None:
    """The compiler, with the core's flags, defines what its kernel path needs (cores.toml kernels)."""
    need = KERNEL_FEATURES[core.kernels]
    if need is None:
        return
    r = subprocess.run([gcc, *core.cflags, "-dM", "-E", "-x", "c", "-"], input="", capture_output=True, text=True,
                       timeout=60)
    if f"#define {need} " not in r.stdout:
        raise FirmwareError(f"core {core.name}: kernels {core.kernels!r} need {need}, which {gcc} with "
                            f"{' '.join(core.cflags)} does not define (cores.toml)")


def _kernel_objects(cc: str, flags: list[str], optimized: bool) -> list[Path]:
    """The kernel sources compiled once per compiler + flags (cached by source digest), so that a model build
    compiles only its generated model.c and the harness."""
    key = hashlib.sha256(json.dumps([cc, flags, optimized, _source_digest()]).encode()).hexdigest()[:20]
    out = cache_dir() / "engine-objs" / key
    objs = [out / (Path(k).stem + ".o") for k in KERNELS]
    if all(o.exists() for o in objs):
        return objs
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    for k in KERNELS:
        _run([cc, *flags, f"-I{C_DIR}", *(["-DECG_OPTIMIZED"] if optimized else []), "-c", str(C_DIR / k),
              "-o", str(tmp / (Path(k).stem + ".o"))], f"{cc} kernel build ({k})")
    try:
        tmp.rename(out)
    except OSError:                      # another process won the race: use its objects
        shutil.rmtree(tmp, ignore_errors=True)
    return objs


def build_engine(model, core: str = "cortex-m7", out_dir=None, optimized: bool = True, defines: dict | None = None,
                 machine: str | None = None, optimize: str = "speed", target: str | None = None,
                 program: str = "verify", gen=None, progress=None) -> BuildResult:
    """Generate C for the INT8 model (package folder or .tflite) and build it for `core` (a core of
    cores.toml, or an MCU target's name) with the harness `program` (PROGRAMS): an MCU core gives a firmware
    ELF linked for its QEMU machine (or `machine`, one of the core's), "host" a host executable.
    `optimized=False` builds the reference kernels; `optimize="size"` keeps int8 weights (no widened filters,
    no ADD pair tables). `target` (targets.toml) only sets the flash/RAM budgets reported; without it they
    are the machine's memory. `gen`: sources already generated for this model, core and optimisation goal
    (codegen.Generated), reused instead of generating again. `progress(text)`, if given, hears each step as
    it starts (a build takes tens of seconds)."""
    say = progress or (lambda text: None)
    from ecgedge.firmware_bridge.codegen import write_sources

    c = resolve_core(core)
    check_optimize(optimize)
    if program not in PROGRAMS:
        raise FirmwareError(f"unknown engine program {program!r}; supported: {', '.join(PROGRAMS)}")
    for k in defines or {}:
        if k.startswith("ECG_FAULT_") and k not in FAULTS:
            raise FirmwareError(f"unknown fault define {k}; supported: {', '.join(FAULTS)}")
    harness = PROGRAMS[program]["host" if c.is_host else "mcu"]
    if harness is None:
        raise FirmwareError(f"program {program!r} has no {c.name} build (the host protocol server is "
                            "build_host(..., program='serve'))")
    m = None if c.is_host else machine_for(c, machine)
    gcc = _need("gcc" if c.is_host else "arm-none-eabi-gcc")
    if not c.is_host:
        _check_compiler_features(gcc, c)
    src = Path(model)
    out = Path(out_dir) if out_dir else (src.parent if src.is_file() else src) / "firmware"
    out.mkdir(parents=True, exist_ok=True)
    if gen is None:
        say("generating C from the INT8 model")
        gen, _ = generate_into(model, out / "gen", kernels=c.kernels, optimize=optimize)
    else:
        write_sources(gen, out / "gen")
    name = ("ecgedge_fw" if program == "protocol" else f"engine_{program}") + ("" if optimized else "_ref")
    kernel_flags = [*c.cflags, "-O2", *COMMON_CFLAGS, f"-DECG_KERNELS_{c.kernels.upper()}=1",
                    *([] if c.is_host else ["-ffunction-sections", "-fdata-sections"]), *_define_flags(defines)]
    objs = _kernel_objects(gcc, kernel_flags, optimized)
    label = target or c.name
    common = [gcc, *kernel_flags, f"-I{C_DIR}", f"-I{out / 'gen'}", *(["-DECG_OPTIMIZED"] if optimized else [])]
    if c.is_host:
        exe = out / name
        _run([*common, *(str(C_DIR / s) for s in harness), str(out / "gen" / "model.c"), *map(str, objs), "-lm",
              "-o", str(exe)], f"gcc engine build (host, {program})")
        return BuildResult(elf=exe, target=label, optimized=optimized, text=None, data=None, bss=None,
                           flash_bytes=None, ram_bytes=None,
                           arena_bytes=gen.arena_bytes if optimized else gen.reference_plan.arena_bytes,
                           const_bytes=gen.const_bytes if optimized else gen.reference_const_bytes, macs=gen.macs,
                           target_flash_bytes=None, target_ram_bytes=None, model_sha256=gen.model.sha256,
                           defines=dict(defines or {}),
                           layers=gen.layer_table if optimized else gen.reference_layer_table, core=c.name,
                           machine=None, kernels=c.kernels, optimize=optimize, program=program, gen=gen)
    elf = out / f"{name}.elf"
    tick = Fraction(10**9, m.systick_hz)
    srcs = [C_DIR / s for s in harness + ["startup.c"]]
    if program == "protocol":
        srcs.append(C_DIR / f"hal_{m.hal}.c")
    cmd = [*common, f'-DECG_FW_NAME="ecgedge-fw {FW_VERSION} {label}"',
           "-DECG_COUNTER_KIND=1", f"-DECG_UART_BASE={m.uart_base:#x}u",
           f"-DECG_SYSTICK_HZ={m.systick_hz}u", f"-DECG_TICK_NUM={tick.numerator}u",
           f"-DECG_TICK_DEN={tick.denominator}u", f"-DECG_RING_LEN={m.ring_samples}",
           *map(str, srcs), str(out / "gen" / "model.c"), *map(str, objs),
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           f"-T{linker_script(m, out)}", "-Wl,--gc-sections", f"-Wl,-Map={out / (name + '.map')}", "-lm",
           "-o", str(elf)]
    say(f"compiling with arm-none-eabi-gcc -O2 for {label} ({c.name} on {m.name}, {len(gen.layer_table)} layers)")
    _run(cmd, f"arm-none-eabi-gcc firmware build ({c.name}, {m.name}, {program})")
    text, data, bss = _sizes(elf)
    if target:
        from ecgedge.targets import get_target
        tgt = get_target(target)
        flash_budget, ram_budget = tgt.flash_bytes, tgt.ram_bytes
    else:
        flash_budget, ram_budget = m.code.length, m.ram.length
    res = BuildResult(elf=elf, target=label, optimized=optimized, text=text, data=data, bss=bss,
                      flash_bytes=text + data, ram_bytes=data + bss,
                      arena_bytes=gen.arena_bytes if optimized else gen.reference_plan.arena_bytes,
                      const_bytes=gen.const_bytes if optimized else gen.reference_const_bytes, macs=gen.macs,
                      target_flash_bytes=flash_budget, target_ram_bytes=ram_budget, model_sha256=gen.model.sha256,
                      defines=dict(defines or {}),
                      layers=gen.layer_table if optimized else gen.reference_layer_table, symbols=elf_symbols(elf),
                      core=c.name, machine=m.name, kernels=c.kernels, optimize=optimize, program=program, gen=gen)
    (out / f"{name}.json").write_text(json.dumps(res.to_dict(), indent=1, default=str))
    return res


def build_firmware(package_dir, target: str = "cortex-m7", out_dir=None, optimized: bool = True,
                   defines: dict | None = None, optimize: str = "speed", machine: str | None = None,
                   progress=None) -> BuildResult:
    """build_engine for an MCU target of targets.toml (its engine_core), with the target's flash/RAM
    budgets; a core name of cores.toml is accepted as well."""
    from ecgedge.targets import load_targets

    if target in load_targets():
        core = firmware_core(target)
        return build_engine(package_dir, core.name, out_dir, optimized=optimized, defines=defines, machine=machine,
                            optimize=optimize, target=target, program="protocol", progress=progress)
    return build_engine(package_dir, target, out_dir, optimized=optimized, defines=defines, machine=machine,
                        optimize=optimize, program="protocol", progress=progress)


def _source_digest(*extra: bytes) -> str:
    h = hashlib.sha256()
    for f in sorted(C_DIR.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    for f in ("codegen.py", "ops.py", "ops_general.py", "kernel_params.py", "planner.py", "quant.py", "build.py",
              "cores.py", "cores.toml"):
        h.update((Path(__file__).parent / f).read_bytes())
    for e in extra:
        h.update(e)
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "firmware"


def firmware_for_package(package_dir, target: str = "cortex-m7", optimized: bool = True,
                         defines: dict | None = None, optimize: str = "speed", machine: str | None = None) -> Path:
    """The firmware ELF for a package (or .tflite) on an MCU target or core, built once and cached
    (model sha + sources + flags)."""
    raw, _ = read_model(package_dir)
    mf = Path(package_dir) / "manifest.json"
    manifest_bytes = mf.read_bytes() if mf.exists() else b""
    key = _source_digest(raw, manifest_bytes, target.encode(), str(optimized).encode(), optimize.encode(),
                         str(machine).encode(), json.dumps(defines or {}, sort_keys=True).encode())
    out = cache_dir() / key
    elf = out / ("ecgedge_fw" + ("" if optimized else "_ref") + ".elf")
    if not elf.exists():
        build_firmware(package_dir, target, out, optimized=optimized, defines=defines, optimize=optimize,
                       machine=machine)
    return elf


def build_host(package_dir, out_dir, program: str = "run", optimized: bool = False, sanitize: bool = False,
               defines: dict | None = None, compiler: str | None = None, kernels: str | None = None,
               optimize: str = "speed") -> Path:
    """Host executable: 'run' (windows on stdin -> outputs), 'serve' (protocol on stdio), 'fuzz' (libFuzzer),
    'codec' (frames on stdin re-encoded to stdout), 'sim' (the simulator's inference path: host_sim.c). `kernels` ("c" or "dsp", default the host core's):
    the optimised kernel path, run on the host (the DSP instructions emulated in C)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kernels = kernels or get_core("host").kernels
    if kernels == "mve":
        raise FirmwareError("the Helium (mve) kernels run only on an MVE core (cortex-m55 in QEMU), not on a host")
    check_optimize(optimize)
    generate_into(package_dir, out / "gen", kernels=kernels, optimize=optimize)
    main = {"run": ["host_run.c"], "serve": ["host_serve.c"] + APP, "fuzz": ["fuzz_protocol.c"] + APP,
            "codec": ["host_codec.c", "protocol.c"], "sim": ["host_sim.c"]}[program]
    cc = compiler or ("clang" if program == "fuzz" else "gcc")
    _need(cc)
    flags = ["-O2" if not sanitize else "-O1", "-g" if sanitize else "-g0", *COMMON_CFLAGS]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    if program == "fuzz":
        flags += ["-fsanitize=fuzzer,address,undefined", "-DECG_FUZZING"]
    exe = out / f"ecg_{program}{'_opt' if optimized else ''}{'_san' if sanitize else ''}"
    srcs = [C_DIR / s for s in KERNELS + main] + [out / "gen" / "model.c"]
    cmd = [cc, *flags, f"-I{C_DIR}", f"-I{out / 'gen'}", *(["-DECG_OPTIMIZED"] if optimized else []),
           f"-DECG_KERNELS_{kernels.upper()}=1", *_define_flags(defines), *map(str, srcs), "-lm", "-o", str(exe)]
    _run(cmd, f"{cc} host build ({program})")
    return exe


def host_for_package(package_dir, program: str = "sim", optimized: bool = True) -> Path:
    """A host executable for a package, built once and cached like the firmware (model sha + sources + flags):
    the simulator starts one per device without compiling again. Built in a scratch folder and moved into
    place, so concurrent first uses cannot see half a build."""
    raw, _ = read_model(package_dir)
    manifest_bytes = (Path(package_dir) / "manifest.json").read_bytes() if (Path(package_dir) / "manifest.json").exists() else b""
    key = _source_digest(raw, manifest_bytes, b"host", program.encode(), str(optimized).encode())
    out = cache_dir() / f"host-{program}-{key}"
    exe = out / f"ecg_{program}{'_opt' if optimized else ''}"
    if not exe.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".host-{program}-", dir=cache_dir()))
        try:
            build_host(package_dir, tmp, program, optimized=optimized)
            try:
                os.replace(tmp, out)
            except OSError:  # another process put its build there first: use that one
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not exe.exists():
        raise FirmwareError(f"host build of {program} for {package_dir} did not produce {exe}")
    return exe


__all__ = ["BuildResult", "host_for_package", "PROGRAMS", "build_engine", "build_firmware", "build_host", "firmware_for_package", "firmware_core",
           "machine_for", "mcu_cores", "check_optimize", "elf_symbols", "generate_into", "OPTIMIZE"]
