"""The package as a drop-in C library: `dist/<model>-<target>/c/` (docs/integrate.md).

    lib = write_c_library("dist/pocket_k-cortex-m7")          # -> CLibrary (folder, sources, model facts)
    sizes = measure_library(lib.folder)                       # {core: {text_bytes, rodata_bytes, arena_bytes, ...}}
    report_keys = package_library(pkg_dir, target)            # both, for the package writer (report.json)

The folder holds the generated model (renamed ecg_model_gen.c/.h so it cannot collide with an
integrator's `model.h`), the kernel sources the engine builds (unused functions are dropped by
--gc-sections), SHA-256, the public header `ecgedge_model.h` and its wrapper `ecgedge_model.c`, and the
build glue: CMakeLists.txt (static library `ecgedge_model`), a Makefile, a CMake toolchain file for
arm-none-eabi-gcc, a Zephyr module (zephyr/module.yml, CMakeLists.txt, Kconfig) and an Arduino
library layout (library.properties, src/, examples/). Templates live in `clib_files/`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ecgedge import __version__
from ecgedge.errors import FirmwareError
from ecgedge.firmware_bridge import build as fw_build
from ecgedge.firmware_bridge.cores import Core, cores, get_core

FILES = Path(__file__).resolve().parent / "clib_files"
LIB_DIR = "c"
# copies of engine files get an ecg_ prefix where they lack one (an integrator's project may have a model.h)
RENAMES = {"model.c": "ecg_model_gen.c", "model.h": "ecg_model_gen.h", "sha256.c": "ecg_sha256.c",
           "sha256.h": "ecg_sha256.h"}
CONFIG_INCLUDE = '#include "ecgedge_config.h" /* ecgedge library build options (added to this copy) */\n'
# flags of the size measurement and of every build file: the engine is tested with these
LIB_CFLAGS = ["-O2", "-std=gnu99", "-ffunction-sections", "-fdata-sections", "-ffp-contract=off",
              "-fno-strict-aliasing"]
ARDUINO_ARCHS = ["mbed", "mbed_nano", "mbed_portenta", "mbed_nicla", "mbed_giga", "samd", "sam", "nrf52",
                 "renesas_uno", "renesas_portenta", "stm32", "rp2040"]
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


@dataclass
class CLibrary:
    folder: Path
    name: str
    target: str
    core: str
    sources: list[str]                 # src/*.c, in build order
    arena_bytes: int                   # optimised lowering
    reference_arena_bytes: int
    const_bytes: int
    macs: int
    model_sha256: str
    kernels_used: list[str] = field(default_factory=list)


def core_for_target(target) -> Core:
    """The cores.toml entry of an MCU target profile (its targets.toml engine_core)."""
    return fw_build.firmware_core(target)


def arm_cores() -> list[Core]:
    return [c for c in cores().values() if not c.is_host]


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _fill(text: str, values: dict) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise FirmwareError(f"C library template: placeholders {sorted(set(left))} left unfilled")
    return text


def _rewrite_includes(text: str) -> str:
    return _INCLUDE.sub(lambda m: m.group(0).replace(f'"{m.group(1)}"', f'"{RENAMES.get(m.group(1), m.group(1))}"'),
                        text)


def _engine_files() -> list[str]:
    """The engine's kernel sources, SHA-256 and every header they include (transitively)."""
    todo = list(fw_build.KERNELS) + ["sha256.c"]
    out: list[str] = []
    while todo:
        f = todo.pop(0)
        if f in out:
            continue
        path = fw_build.C_DIR / f
        if not path.is_file():
            raise FirmwareError(f"engine source {path} is missing")
        out.append(f)
        todo += [inc for inc in _INCLUDE.findall(path.read_text()) if (fw_build.C_DIR / inc).is_file()]
    return out


def _output_macros(manifest: dict) -> str:
    rows = []
    for i, o in enumerate(manifest.get("outputs") or []):
        nm = _ident(str(o.get("name", f"out{i}"))).upper()
        what = ", ".join(str(x) for x in (o.get("kind"), o.get("unit"), o.get("description")) if x)
        thr = o.get("threshold")
        if thr is not None:
            what += f"; threshold {thr} on the sigmoid probability"
        rows.append(f"#define ECG_MODEL_OUT_{nm} {int(o.get('index', i))}" + (f"   /* {what} */" if what else ""))
    return ("\n".join(rows) + "\n") if rows else ""


def write_c_library(package_dir, out_dir=None, target: str | None = None, core: str | None = None,
                    manifest: dict | None = None) -> CLibrary:
    """Write the C library of a package (model_int8.tflite + manifest.json) into `out_dir` (default
    PACKAGE/c). `manifest` is given by the package writer before manifest.json exists; `target`/`core`
    default to the manifest's target and its core."""
    from ecgedge.firmware_bridge.codegen import generate, write_sources
    from ecgedge.targets import get_target

    pkg = Path(package_dir)
    out = Path(out_dir) if out_dir else pkg / LIB_DIR
    if out.exists():
        shutil.rmtree(out)
    src = out / "src"
    src.mkdir(parents=True)
    if manifest is None:
        gen, manifest = fw_build.generate_into(pkg, src)
    else:
        gen = generate((pkg / "model_int8.tflite").read_bytes(), manifest)
        write_sources(gen, src)
    target = target or manifest.get("target") or "cortex-m7"
    core_name = core or core_for_target(get_target(target)).name
    get_core(core_name)
    (src / "layers.json").replace(out / "layers.json")
    for old, new in (("model.c", "ecg_model_gen.c"), ("model.h", "ecg_model_gen.h")):
        text = _rewrite_includes((src / old).read_text())
        (src / old).unlink()
        (src / new).write_text((CONFIG_INCLUDE if new.endswith(".c") else "") + text)
    engine = _engine_files()
    for f in engine:
        text = _rewrite_includes((fw_build.C_DIR / f).read_text())
        (src / RENAMES.get(f, f)).write_text((CONFIG_INCLUDE if f.endswith(".c") else "") + text)
    model = gen.model
    tin, tout = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    contract = manifest.get("input", {})
    in_size = int(_prod(tin.shape))
    notice = manifest.get("notice") or ("DEMO WEIGHTS, not for clinical use." if manifest.get("demo", True)
                                        else "Research use; not a medical device.")
    pre = contract.get("preprocessing") or {}
    filters = ", ".join(f"{k.replace('_hz', '')} {v} Hz" for k, v in pre.items() if v) or "no filter stated"
    name = manifest.get("model", "model")
    sources = ["ecgedge_model.c", "ecg_model_gen.c"] + [RENAMES.get(f, f) for f in engine if f.endswith(".c")]
    cores_arm = arm_cores()
    values = {
        "NAME": name, "IDENT": _ident(name), "TARGET": target, "CORE": core_name, "VERSION": __version__,
        "NOTICE": notice, "SHA256": model.sha256, "DEMO": 1 if manifest.get("demo", True) else 0,
        "FILTERS": filters, "INPUT_SIZE": in_size,
        "WINDOW": int(contract.get("window_samples", in_size)), "RATE": int(contract.get("sampling_rate_hz", 500)),
        "SCALE_UV": repr(float(contract.get("scale_uv", 1000.0))), "INPUT_SCALE": repr(float(tin.scale[0])),
        "INPUT_ZP": int(tin.zero_point[0]), "OUTPUT_SIZE": int(_prod(tout.shape)),
        "OUTPUT_SCALE": repr(float(tout.scale[0])), "OUTPUT_ZP": int(tout.zero_point[0]),
        "OUTPUT_MACROS": _output_macros(manifest), "ARENA_OPT": gen.arena_bytes,
        "ARENA_REF": gen.reference_plan.arena_bytes, "CONST_BYTES": gen.const_bytes, "MACS": gen.macs,
        "CMAKE_SOURCES": "".join(f"  src/{s}\n" for s in sources),
        "ZEPHYR_SOURCES": "".join(f"    ${{ECG_SRC}}/{s}\n" for s in sources),
        "MAKE_SOURCES": " ".join(f"src/{s}" for s in sources),
        "CORE_NAMES": " ".join(c.name for c in cores_arm),
        "CORE_FLAGS": "\n".join(f'set(ECG_CORE_FLAGS_{c.name} "{" ".join(c.cflags)}")' for c in cores_arm),
        "MAKE_CORE_FLAGS": "\n".join(f"CORE_FLAGS_{c.name} := {' '.join(c.cflags)}" for c in cores_arm),
        "ARDUINO_ARCHS": ",".join(ARDUINO_ARCHS),
    }
    for tmpl in sorted(p for p in FILES.rglob("*") if p.is_file()):
        rel = tmpl.relative_to(FILES)
        if rel.name == "ecgedge_model_root.h":      # c/ecgedge_model.h forwards to src/
            dest = out / "ecgedge_model.h"
        else:
            dest = out / ("src" if rel.suffix in (".c", ".h") and rel.parent == Path(".") else "") / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(_fill(tmpl.read_text(), values))
    gen_c = (src / "ecg_model_gen.c").read_text()
    used = sorted(set(re.findall(r"\b(ecg_[a-z0-9_]+_(?:ref|opt)|ECG_[A-Z0-9]+)\s*\(", gen_c)))
    lib = CLibrary(folder=out, name=name, target=target, core=core_name, sources=sources,
                   arena_bytes=gen.arena_bytes, reference_arena_bytes=gen.reference_plan.arena_bytes,
                   const_bytes=gen.const_bytes, macs=gen.macs, model_sha256=model.sha256,
                   kernels_used=[u for u in used if u not in ("ECG_NOINLINE",)])
    write_readme(lib, None, "not measured yet (measure_library; the package writer puts them in report.json)")
    return lib


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# -- sizes per core -------------------------------------------------------------------------------------

_PROBE_MAIN = """#include "ecgedge_model.h"
static int8_t probe_in[ECG_MODEL_INPUT_SIZE], probe_out[ECG_MODEL_OUTPUT_SIZE];
int main(void) {
    ecg_model_invoke(probe_in, probe_out);
    return probe_out[0] + ecg_model_verify();
}
"""
MEASURED_WITH = ("ecg_model_invoke + ecg_model_verify linked with -Wl,--gc-sections (newlib-nano memcpy/memset "
                 "included, no startup code); text = .text, rodata = .rodata (the model constants), arena = the "
                 "ecg_arena symbol")


def measure_library(c_dir, core_names: list[str] | None = None, optimized: bool = True,
                    work_dir=None) -> dict[str, dict]:
    """text/rodata/data/bss/arena bytes of the library for each Cortex-M core (arm-none-eabi-gcc, the
    flags of LIB_CFLAGS + the core's), measured on a probe that calls ecg_model_invoke and
    ecg_model_verify, linked with --gc-sections."""
    c_dir = Path(c_dir)
    gcc = fw_build._need("arm-none-eabi-gcc")
    chosen = [get_core(n) for n in core_names] if core_names else arm_cores()
    srcs = sorted((c_dir / "src").glob("*.c"))
    own_tmp = work_dir is None
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ecg-clib-"))
    try:
        (work / "probe_main.c").write_text(_PROBE_MAIN)
        out = {}
        for core in chosen:
            d = work / core.name
            d.mkdir(parents=True, exist_ok=True)
            elf = d / "probe.elf"
            cmd = [gcc, *core.cflags, *LIB_CFLAGS, f"-I{c_dir / 'src'}",
                   *([] if optimized else ["-DECG_REFERENCE"]), *map(str, srcs), str(work / "probe_main.c"),
                   "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                   "-Wl,-e,main", "-o", str(elf)]
            fw_build._run(cmd, f"C library size probe for {core.name}")
            sec = _sections(elf)
            syms = fw_build.elf_symbols(elf)
            out[core.name] = {
                "text_bytes": sec.get(".text", 0), "rodata_bytes": sec.get(".rodata", 0),
                "data_bytes": sec.get(".data", 0), "bss_bytes": sec.get(".bss", 0),
                "arena_bytes": syms["ecg_arena"][1] if "ecg_arena" in syms else None,
            }
        return out
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def _sections(elf: Path) -> dict[str, int]:
    r = subprocess.run([fw_build._need("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True,
                       check=True)
    sec = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    return sec


# -- README -----------------------------------------------------------------------------------------------

def write_readme(lib: CLibrary, sizes: dict[str, dict] | None, note: str | None = None) -> Path:
    rows = ""
    if sizes:
        rows = ("| core | text | rodata (constants) | data | bss | arena |\n|---|---:|---:|---:|---:|---:|\n" +
                "".join(f"| {c} | {s['text_bytes']:,} | {s['rodata_bytes']:,} | {s['data_bytes']:,} | "
                        f"{s['bss_bytes']:,} | {s['arena_bytes']:,} |\n" for c, s in sizes.items()))
        rows += f"\nMeasured at export: {MEASURED_WITH}; flags `{' '.join(LIB_CFLAGS)}` + the core's.\n"
    else:
        rows = f"Sizes: {note or 'not measured'}.\n"
    text = f"""# ecgedge model library: {lib.name} ({lib.target})

Generated by ecgedge {__version__} from `model_int8.tflite` (SHA-256 `{lib.model_sha256}`); do not edit.
Static C99, no interpreter, no heap: outputs are bit-exact with tflite-micro. See the project's
`docs/integrate.md` for the whole story (arena placement, flags, cores, what was run on silicon).

## Calls (`src/ecgedge_model.h`, C99 and C++)

```c
#include "ecgedge_model.h"
int ok = ecg_model_verify();                 /* once at boot: constants match their SHA-256 */
int8_t in[ECG_MODEL_INPUT_SIZE], out[ECG_MODEL_OUTPUT_SIZE];
ecg_model_invoke(in, out);                   /* quantised window -> raw int8 outputs */
float mv[ECG_MODEL_WINDOW_SAMPLES], y[ECG_MODEL_OUTPUT_SIZE];
int clipped = ecg_model_run_mv(mv, y);       /* filtered mV -> dequantised outputs (input contract applied) */
```

Macros: `ECG_MODEL_INPUT_SIZE`, `ECG_MODEL_OUTPUT_SIZE`, `ECG_MODEL_INPUT_SCALE`/`_ZERO_POINT`,
`ECG_MODEL_OUTPUT_SCALE`/`_ZERO_POINT`, `ECG_MODEL_SAMPLE_RATE_HZ`, `ECG_MODEL_WINDOW_SAMPLES`,
`ECG_MODEL_SCALE_UV`, `ECG_MODEL_ARENA_BYTES`, `ECG_MODEL_SHA256`, `ECG_MODEL_OUT_<name>` (output indices).
The model: {lib.macs:,} MACs per window, arena {lib.arena_bytes:,} B (optimised kernels; reference
{lib.reference_arena_bytes:,} B), constants {lib.const_bytes:,} B in flash.

## Sizes per core

{rows}
## Build lines

```sh
# CMake (host, or any core with the toolchain file here)
cmake -S . -B build && cmake --build build                       # in your project: add_subdirectory(c ecgedge_model)
cmake -S . -B build-m -DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake -DECG_CORE={lib.core}
#   options: -DECG_OPTIMIZED=OFF (reference kernels), -DECG_ARENA_ATTR='__attribute__((section(".dtcm_bss")))',
#            -DECG_ARENA_SYMBOL=my_arena (your own int8_t my_arena[ECG_MODEL_ARENA_BYTES], 16-byte aligned)
# Make
make CORE={lib.core}                                            # build/{lib.core}/libecgedge_model.a
# Zephyr: ZEPHYR_EXTRA_MODULES=<this folder>, CONFIG_ECGEDGE_MODEL=y (Kconfig: _REFERENCE, _ARENA_SECTION)
# Arduino: copy this folder into your libraries/ folder; options in src/ecgedge_config.h
# Any IDE (STM32CubeIDE, MCUXpresso, Keil): add src/*.c, the include path src/, and -ffunction-sections
#   -fdata-sections -Wl,--gc-sections (unused kernels drop out)
```

Files: `src/` (the library), `CMakeLists.txt`, `Makefile`, `cmake/arm-none-eabi.cmake`, `zephyr/`,
`library.properties` + `examples/` (Arduino), `extras/run_one.c` and `extras/run_mv.cpp` (smallest programs),
`layers.json` (the generated layers, MACs, arena plan). Kernel functions this model calls:
{", ".join(f"`{k}`" for k in lib.kernels_used) or "-"}.
"""
    path = lib.folder / "README.md"
    path.write_text(text)
    return path


def package_library(package_dir, target, manifest: dict | None = None) -> dict:
    """The package writer's one call: write PACKAGE/c, measure it per core, write its README; returns
    the report.json keys (`c_library`: sizes per core; `c_library_build`: how they were measured)."""
    try:
        lib = write_c_library(package_dir, target=target.name, core=core_for_target(target).name, manifest=manifest)
    except FirmwareError as e:   # an op the engine lacks, a core cores.toml does not have: say where it came from
        raise FirmwareError(f"the C library for {target.name} (c/, docs/integrate.md): {e}") from None
    sizes, note = None, None
    try:
        sizes = measure_library(lib.folder)
    except FirmwareError as e:   # no arm-none-eabi-gcc here: the sources are complete, the sizes unmeasured
        note = "not measured at export: " + str(e).splitlines()[0]
    write_readme(lib, sizes, note)
    build = {"dir": LIB_DIR, "core": lib.core, "sources": [f"src/{s}" for s in lib.sources],
             "optimized": True, "flags": " ".join(LIB_CFLAGS), "measured_with": MEASURED_WITH,
             "arena_bytes_reference": lib.reference_arena_bytes, "const_bytes": lib.const_bytes}
    if note:
        build["not_measured"] = note
    return {"c_library": sizes or {}, "c_library_build": build}


def layout_problems(c_dir) -> list[str]:
    """Structure checks of the Zephyr module and the Arduino library in a C library folder (empty: fine)."""
    import yaml

    c = Path(c_dir)
    bad = []
    for f in ("CMakeLists.txt", "Makefile", "README.md", "ecgedge_model.h", "src/ecgedge_model.h", "src/ecgedge_config.h",
              "cmake/arm-none-eabi.cmake", "zephyr/module.yml", "zephyr/CMakeLists.txt", "zephyr/Kconfig",
              "library.properties"):
        if not (c / f).is_file():
            bad.append(f"missing {f}")
    if bad:
        return bad
    # Zephyr: module.yml names the cmake folder and the Kconfig file; every source the CMake file lists exists;
    # every CONFIG_ it reads is defined in the Kconfig
    mod = yaml.safe_load((c / "zephyr/module.yml").read_text()) or {}
    b = mod.get("build") or {}
    if not mod.get("name"):
        bad.append("zephyr/module.yml: no name")
    if not (c / str(b.get("cmake", "")) / "CMakeLists.txt").is_file():
        bad.append(f"zephyr/module.yml: build.cmake {b.get('cmake')!r} has no CMakeLists.txt")
    if not (c / str(b.get("kconfig", ""))).is_file():
        bad.append(f"zephyr/module.yml: build.kconfig {b.get('kconfig')!r} does not exist")
    zc = (c / "zephyr/CMakeLists.txt").read_text()
    for s in re.findall(r"\$\{ECG_SRC\}/(\S+)", zc):
        if not (c / "src" / s).is_file():
            bad.append(f"zephyr/CMakeLists.txt: source src/{s} does not exist")
    kconf = (c / "zephyr/Kconfig").read_text()
    defined = set(re.findall(r"^config\s+(\w+)", kconf, re.M))
    for sym in set(re.findall(r"CONFIG_(\w+)", zc)):
        if sym not in defined:
            bad.append(f"zephyr/CMakeLists.txt reads CONFIG_{sym}, which zephyr/Kconfig does not define")
    for sym in defined:
        body = kconf.split(f"config {sym}", 1)[1].split("\nconfig ", 1)[0]
        if not re.search(r"^\s+(bool|string|int|hex)\b", body, re.M):
            bad.append(f"zephyr/Kconfig: config {sym} has no type")
    # Arduino (library specification 1.5): library.properties fields, sources in src/, examples/<x>/<x>.ino
    props = dict(line.split("=", 1) for line in (c / "library.properties").read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "architectures"):
        if not props.get(key, "").strip():
            bad.append(f"library.properties: no {key}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", props.get("name", "")):
        bad.append(f"library.properties: name {props.get('name')!r} is not a valid Arduino library name")
    for inc in props.get("includes", "").split(","):
        if inc.strip() and not (c / "src" / inc.strip()).is_file():
            bad.append(f"library.properties: includes {inc.strip()} is not in src/")
    if not list((c / "src").glob("*.c")):
        bad.append("src/ holds no C source")
    for ex in sorted((c / "examples").iterdir()) if (c / "examples").is_dir() else []:
        if not (ex / f"{ex.name}.ino").is_file():
            bad.append(f"examples/{ex.name}: no {ex.name}.ino")
    cmake = (c / "CMakeLists.txt").read_text()
    for s in re.findall(r"^\s+src/(\S+\.c)$", cmake, re.M):
        if not (c / "src" / s).is_file():
            bad.append(f"CMakeLists.txt: source src/{s} does not exist")
    return bad

