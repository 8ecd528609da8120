"""Build the generated model + firmware: Cortex-M7 ELF for QEMU mps2-an500, or host executables.

`build_firmware(package_dir, target, out_dir, optimized=True, defines=None) -> BuildResult`
`firmware_for_package(package_dir, target) -> Path(elf)` (cached by model sha + sources + flags)
`build_host(package_dir_or_tflite, out_dir, program="run"|"serve"|"fuzz", ...) -> Path`
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ecgedge.contract.package import read_model
from ecgedge.errors import FirmwareError

C_DIR = Path(__file__).resolve().parent / "c"
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
FW_VERSION = "0.1.0"
KERNELS = ["ecg_kernels_ref.c", "ecg_kernels_general.c", "ecg_kernels_lstm.c", "ecg_kernels_opt.c"]
APP = ["app.c", "protocol.c", "sha256.c"]
M7_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"]
COMMON_CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-Wno-unused-parameter", "-ffp-contract=off",
                 "-fno-strict-aliasing"]
FAULTS = ("ECG_FAULT_REQUANT_SHIFT", "ECG_FAULT_SWAP_OUTPUTS", "ECG_FAULT_INPUT_SCALE", "ECG_FAULT_DROP_SAMPLES",
          "ECG_FAULT_MODEL_HASH")


@dataclass
class BuildResult:
    elf: Path
    target: str
    optimized: bool
    text: int
    data: int
    bss: int
    flash_bytes: int            # text + data (what goes to flash)
    ram_bytes: int              # data + bss (static RAM, stack/heap reserve excluded)
    arena_bytes: int
    const_bytes: int
    macs: int
    target_flash_bytes: int
    target_ram_bytes: int
    model_sha256: str
    defines: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    symbols: dict = field(default_factory=dict)   # name -> (address, size)

    def summary(self) -> str:
        return (f"{self.elf.name}: text {self.text} data {self.data} bss {self.bss} | flash {self.flash_bytes} / "
                f"{self.target_flash_bytes} B, static RAM {self.ram_bytes} / {self.target_ram_bytes} B, "
                f"arena {self.arena_bytes} B, constants {self.const_bytes} B")

    def to_dict(self) -> dict:
        d = asdict(self)
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


def _sizes(elf: Path) -> tuple[int, int, int]:
    r = subprocess.run([_need("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True, check=True)
    sec = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    text = sec.get(".text", 0) + sec.get(".ARM.exidx", 0)
    return text, sec.get(".data", 0), sec.get(".bss", 0)


def elf_symbols(elf: Path, nm: str = "arm-none-eabi-nm") -> dict[str, tuple[int, int]]:
    r = subprocess.run([_need(nm), "-S", "--defined-only", str(elf)], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTdDbBrR":
            out[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return out


def generate_into(package_dir, out_dir: Path):
    from ecgedge.firmware_bridge.codegen import generate, write_sources

    raw, manifest = read_model(package_dir)
    gen = generate(raw, manifest)
    write_sources(gen, out_dir)
    return gen, manifest


def firmware_targets() -> list[str]:
    """Targets (ecgedge/targets.toml) whose firmware this module builds: MCU profiles with a QEMU machine."""
    from ecgedge.targets import builtin_targets
    return [t.name for t in builtin_targets().values() if t.is_mcu and t.qemu_machine]


def check_firmware_target(tgt) -> None:
    """FirmwareError unless `build_firmware` can build for target profile `tgt` (decided by the data: an MCU
    profile with a QEMU machine); export calls it before any work."""
    if not tgt.is_mcu or not tgt.qemu_machine:
        why = "not a microcontroller" if not tgt.is_mcu else "no qemu_machine in its profile"
        raise FirmwareError(f"--firmware: target {tgt.name!r} has no firmware build ({why}); "
                            f"targets with one: {', '.join(firmware_targets())}")


def build_firmware(package_dir, target: str = "cortex-m7", out_dir=None, optimized: bool = True,
                   defines: dict | None = None, progress=None) -> BuildResult:
    """Generate C for the package's INT8 model and build the firmware ELF for `target`. `progress(text)`, if
    given, hears each step as it starts."""
    say = progress or (lambda text: None)
    from ecgedge.targets import get_target

    tgt = get_target(target)
    check_firmware_target(tgt)
    for k in defines or {}:
        if k.startswith("ECG_FAULT_") and k not in FAULTS:
            raise FirmwareError(f"unknown fault define {k}; supported: {', '.join(FAULTS)}")
    gcc = _need("arm-none-eabi-gcc")
    out = Path(out_dir) if out_dir else Path(package_dir) / "firmware"
    out.mkdir(parents=True, exist_ok=True)
    say("generating C from model_int8.tflite")
    gen, manifest = generate_into(package_dir, out / "gen")
    name = "ecgedge_fw" + ("" if optimized else "_ref")
    elf = out / f"{name}.elf"
    srcs = [C_DIR / s for s in KERNELS + APP + ["startup_m7.c", "hal_mps2.c"]] + [out / "gen" / "model.c"]
    cmd = [gcc, *M7_FLAGS, "-O2", *COMMON_CFLAGS, "-ffunction-sections", "-fdata-sections",
           f"-I{C_DIR}", f"-I{out / 'gen'}", f'-DECG_FW_NAME="ecgedge-fw {FW_VERSION} {target}"',
           "-DECG_COUNTER_KIND=1", *(["-DECG_OPTIMIZED"] if optimized else []), *_define_flags(defines),
           *map(str, srcs), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           f"-T{C_DIR / 'mps2_an500.ld'}", "-Wl,--gc-sections", f"-Wl,-Map={out / (name + '.map')}", "-lm",
           "-o", str(elf)]
    say(f"compiling {len(srcs)} C files with arm-none-eabi-gcc -O2 for {target} ({len(gen.layer_table)} layers)")
    _run(cmd, "arm-none-eabi-gcc firmware build")
    text, data, bss = _sizes(elf)
    res = BuildResult(elf=elf, target=target, optimized=optimized, text=text, data=data, bss=bss,
                      flash_bytes=text + data, ram_bytes=data + bss,
                      arena_bytes=gen.arena_bytes if optimized else gen.reference_plan.arena_bytes,
                      const_bytes=gen.const_bytes, macs=gen.macs, target_flash_bytes=tgt.flash_bytes,
                      target_ram_bytes=tgt.ram_bytes, model_sha256=gen.model.sha256, defines=dict(defines or {}),
                      layers=gen.layer_table if optimized else gen.reference_layer_table, symbols=elf_symbols(elf))
    (out / f"{name}.json").write_text(json.dumps(res.to_dict(), indent=1, default=str))
    return res


def _source_digest(*extra: bytes) -> str:
    h = hashlib.sha256()
    for f in sorted(C_DIR.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    for f in ("codegen.py", "ops.py", "ops_general.py", "planner.py", "quant.py", "build.py"):
        h.update((Path(__file__).parent / f).read_bytes())
    for e in extra:
        h.update(e)
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "firmware"


def firmware_for_package(package_dir, target: str = "cortex-m7", optimized: bool = True,
                         defines: dict | None = None) -> Path:
    """The firmware ELF for a package, built once and cached (model sha + sources + flags)."""
    raw, _ = read_model(package_dir)
    manifest_bytes = (Path(package_dir) / "manifest.json").read_bytes() if (Path(package_dir) / "manifest.json").exists() else b""
    key = _source_digest(raw, manifest_bytes, target.encode(), str(optimized).encode(),
                         json.dumps(defines or {}, sort_keys=True).encode())
    out = cache_dir() / key
    elf = out / ("ecgedge_fw" + ("" if optimized else "_ref") + ".elf")
    if not elf.exists():
        build_firmware(package_dir, target, out, optimized=optimized, defines=defines)
    return elf


def build_host(package_dir, out_dir, program: str = "run", optimized: bool = False, sanitize: bool = False,
               defines: dict | None = None, compiler: str | None = None) -> Path:
    """Host executable: 'run' (windows on stdin -> outputs), 'serve' (protocol on stdio), 'fuzz' (libFuzzer),
    'codec' (frames on stdin re-encoded to stdout), 'sim' (the simulator's inference path: host_sim.c)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generate_into(package_dir, out / "gen")
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
           *_define_flags(defines), *map(str, srcs), "-lm", "-o", str(exe)]
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


# ---- one engine build per core (edge-engine verify / generate) --------------------------------------------
# The board files a core's firmware build needs. Cores listed in cores.toml without a row here have no build
# yet and fail loudly; the `cores` work (issue 22) adds its boards here or moves this into cores.toml.
ENGINE_BOARDS = {"cortex-m7": {"startup": "startup_m7.c", "linker": "mps2_an500.ld"}}
ENGINE_PROGRAMS = {"verify": "verify_main.c"}     # MCU main per program; the host build uses host_run.c


@dataclass
class EngineBuild:
    path: Path                  # host executable or firmware ELF
    core: str
    optimized: bool
    machine: str | None         # QEMU machine (None: host)
    gen: object                 # codegen.Generated
    text: int | None = None
    data: int | None = None
    bss: int | None = None

    @property
    def flash_bytes(self) -> int | None:
        return None if self.text is None else self.text + self.data

    @property
    def arena_bytes(self) -> int:
        return self.gen.arena_bytes if self.optimized else self.gen.reference_plan.arena_bytes


def _kernel_objects(cc: str, flags: list[str], optimized: bool) -> list[Path]:
    """The kernel sources compiled once per compiler + flags (cached by source digest), so that a model build
    compiles only its generated model.c."""
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


def build_engine(tflite_or_package, core: str, out_dir, optimized: bool = True, program: str = "verify",
                 defines: dict | None = None, gen=None) -> EngineBuild:
    """The generated engine for `core` (cores.toml) with a harness program: `core="host"` gives a host
    executable (input tensors on stdin -> output tensors on stdout), an MCU core a firmware ELF for the core's
    QEMU machine (input/output files over semihosting, c/verify_main.c). `gen`: sources already generated
    for this model (codegen.Generated), reused instead of generating again."""
    from ecgedge.firmware_bridge.codegen import write_sources
    from ecgedge.firmware_bridge.cores import get_core

    c = get_core(core)
    if program not in ENGINE_PROGRAMS:
        raise FirmwareError(f"unknown engine program {program!r}; supported: {', '.join(ENGINE_PROGRAMS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if gen is None:
        gen, _ = generate_into(tflite_or_package, out / "gen")
    else:
        write_sources(gen, out / "gen")
    exe = out / (f"engine_{program}" + ("" if optimized else "_ref"))
    if c.is_host:
        cc = _need("gcc")
        flags = ["-O2", "-g0", *COMMON_CFLAGS, *_define_flags(defines)]
        objs = _kernel_objects(cc, flags, optimized)
        _run([cc, *flags, f"-I{C_DIR}", f"-I{out / 'gen'}", *(["-DECG_OPTIMIZED"] if optimized else []),
              str(C_DIR / "host_run.c"), str(out / "gen" / "model.c"), *map(str, objs), "-lm", "-o", str(exe)],
             "gcc engine build (host)")
        return EngineBuild(exe, core, optimized, None, gen)
    board = ENGINE_BOARDS.get(core)
    if board is None or not c.qemu_machine:
        raise FirmwareError(f"no firmware build for core {core} yet; cores with one: host, "
                            f"{', '.join(sorted(ENGINE_BOARDS))}")
    cc = _need("arm-none-eabi-gcc")
    flags = [*c.cflags, "-O2", *COMMON_CFLAGS, "-ffunction-sections", "-fdata-sections", *_define_flags(defines)]
    objs = _kernel_objects(cc, flags, optimized)
    elf = exe.with_suffix(".elf")
    _run([cc, *flags, f"-I{C_DIR}", f"-I{out / 'gen'}", *(["-DECG_OPTIMIZED"] if optimized else []),
          str(C_DIR / ENGINE_PROGRAMS[program]), str(C_DIR / board["startup"]), str(out / "gen" / "model.c"),
          *map(str, objs), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
          f"-T{C_DIR / board['linker']}", "-Wl,--gc-sections", "-lm", "-o", str(elf)],
         f"arm-none-eabi-gcc engine build ({core})")
    text, data, bss = _sizes(elf)
    return EngineBuild(elf, core, optimized, c.qemu_machine, gen, text, data, bss)
