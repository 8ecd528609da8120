"""The package's C library (dist/<model>-<target>/c/): layout, CMake/Make/Zephyr/Arduino builds for the host and
every Cortex-M core, bit-exact with tflite-micro, the float helper against the runtime's input contract, arena
placement, sizes in report.json."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecgedge.contract.quantization import window_int8
from ecgedge.firmware_bridge import clib
from ecgedge.device_sim.testmodels import write_test_package
from ecgedge.device_sim.testmodels import int8_vectors as windows
from ecgedge.contract.runners import tflm_run_tensors as tflm_outputs

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "firmware_opmix_int8.tflite"
STRICT = "-Wall -Wextra -Werror"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    pkg = write_test_package(tmp_path_factory.mktemp("clib-pkg"), MODEL.read_bytes())
    return clib.write_c_library(pkg)


def sh(cmd, cwd=None, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd[:4]}...: {r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    return r


def cmake_project(root: Path, c_dir: Path, extra: str = "") -> Path:
    """A user's project that pulls the library in with add_subdirectory, a C99 and a C++17 program."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.13)
project(user_app C CXX)
set(CMAKE_C_STANDARD 99)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
add_subdirectory("{c_dir}" ecgedge_model)
add_executable(run_one "{c_dir}/extras/run_one.c")
target_link_libraries(run_one ecgedge_model)
add_executable(run_mv "{c_dir}/extras/run_mv.cpp")
target_link_libraries(run_mv ecgedge_model)
{extra}
""")
    return root


def run_windows(exe: Path, q: np.ndarray, tmp: Path) -> np.ndarray:
    f = tmp / "in.bin"
    np.ascontiguousarray(q, np.int8).tofile(f)
    r = subprocess.run([str(exe), str(f)], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return np.frombuffer(r.stdout, np.int8).reshape(len(q), -1)


def test_layout_header_and_sources(lib):
    c = lib.folder
    assert clib.layout_problems(c) == []
    src = sorted(p.name for p in (c / "src").iterdir())
    assert "model.c" not in src and "model.h" not in src and "sha256.h" not in src
    for f in (c / "src").glob("*.c"):
        text = f.read_text()
        first = next(line for line in text.splitlines() if line.startswith("#include"))
        # the build options reach every translation unit before any kernel code
        assert first.startswith(('#include "ecgedge_config.h"', '#include "ecgedge_model.h"')), f.name
        assert '#include "model.h"' not in text and '#include "sha256.h"' not in text
    h = (c / "src/ecgedge_model.h").read_text()
    from ecgedge.firmware_bridge.tflite_model import load_model
    m = load_model(MODEL)
    tin, tout = m.tensors[m.inputs[0]], m.tensors[m.outputs[0]]
    assert f"#define ECG_MODEL_INPUT_SIZE {int(np.prod(tin.shape))}\n" in h
    assert f"#define ECG_MODEL_OUTPUT_SIZE {int(np.prod(tout.shape))}\n" in h
    assert f"#define ECG_MODEL_INPUT_SCALE {float(tin.scale[0])!r}\n" in h
    assert f"#define ECG_MODEL_OUTPUT_ZERO_POINT {int(tout.zero_point[0])}\n" in h
    assert f'#define ECG_MODEL_SHA256 "{m.sha256}"' in h
    assert f"#define ECG_MODEL_ARENA_BYTES {lib.arena_bytes}\n" in h
    assert 'extern "C"' in h and "ecg_model_run_mv(const float *mv, float *out)" in h
    # every core of cores.toml is offered by the toolchain file and the Makefile
    for core in clib.arm_cores():
        assert f"ECG_CORE_FLAGS_{core.name} \"{' '.join(core.cflags)}\"" in (c / "cmake/arm-none-eabi.cmake").read_text()
        assert f"CORE_FLAGS_{core.name} := {' '.join(core.cflags)}" in (c / "Makefile").read_text()


def test_layout_checks_catch_breakage(lib, tmp_path):
    c = tmp_path / "c"
    shutil.copytree(lib.folder, c)
    (c / "src/ecg_sha256.c").unlink()
    k = c / "zephyr/Kconfig"
    k.write_text(k.read_text().replace("config ECGEDGE_MODEL_ARENA_SECTION", "config ECGEDGE_ARENA"))
    (c / "examples/ecgedge_infer/ecgedge_infer.ino").rename(c / "examples/ecgedge_infer/other.ino")
    p = c / "library.properties"
    p.write_text(p.read_text().replace("maintainer=ecgedge\n", ""))
    bad = "\n".join(clib.layout_problems(c))
    for what in ("zephyr/CMakeLists.txt: source src/ecg_sha256.c", "CONFIG_ECGEDGE_MODEL_ARENA_SECTION",
                 "examples/ecgedge_infer: no ecgedge_infer.ino", "library.properties: no maintainer",
                 "CMakeLists.txt: source src/ecg_sha256.c"):
        assert what in bad, bad


@pytest.mark.backend
def test_host_cmake_c99_cpp17_bit_exact(lib, tmp_path):
    """The user's CMake project (add_subdirectory), -Wall -Wextra -Werror for the library and both programs."""
    proj = cmake_project(tmp_path / "app", lib.folder)
    sh(["cmake", "-S", str(proj), "-B", str(tmp_path / "b"), f"-DCMAKE_C_FLAGS={STRICT}",
        f"-DCMAKE_CXX_FLAGS={STRICT}"])
    sh(["cmake", "--build", str(tmp_path / "b")])
    q = windows(MODEL, 40, seed=11)
    got = run_windows(tmp_path / "b/run_one", q, tmp_path)
    assert np.array_equal(got, tflm_outputs(MODEL, q))

    # the float helper applies the package's input contract exactly as the host runtime does
    manifest = json.loads((lib.folder.parent / "manifest.json").read_text())
    contract = manifest["input"]
    rng = np.random.default_rng(4)
    n = contract["window_samples"]
    mv = (rng.normal(0, 0.4, (6, n)) + np.sin(np.linspace(0, 20, n))).astype(np.float32)
    # exact rounding ties and out-of-range values: q = zp + k and k + 0.5 steps, big excursions, NaN
    step_mv = contract["tflite_scale"] * contract["scale_uv"] / 1000.0
    mv[4, :200] = (np.arange(200) / 2 - 50) * step_mv
    mv[5, :10] = [1e6, -1e6, 3.0, -3.0, np.inf, -np.inf, 0.0, -0.0, 1e-30, np.nan]
    f = tmp_path / "mv.f32"
    mv.tofile(f)
    r = subprocess.run([str(tmp_path / "b/run_mv"), str(f)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got_f = np.frombuffer(r.stdout, np.float32).reshape(len(mv), -1)
    clipped = [int(line.split()[1]) for line in r.stderr.decode().splitlines()]
    finite = np.nan_to_num(mv.astype(np.float64), nan=-np.inf)   # NaN: the helper's documented -128
    with np.errstate(over="ignore"):
        q_host = np.array([window_int8(w * 1000.0, contract) for w in finite])
    raw = tflm_outputs(MODEL, q_host)
    o = manifest["outputs"][0]
    want = ((raw.astype(np.float64) - o["tflite_zero_point"]) * o["tflite_scale"]).astype(np.float32)
    assert np.array_equal(got_f, want)
    with np.errstate(over="ignore"):
        x = np.round(finite * 1000.0 / contract["scale_uv"] / contract["tflite_scale"]) + contract["tflite_zero_point"]
    assert clipped == [int(v) for v in np.sum((x < -128) | (x > 127), axis=1)]
    assert clipped[5] >= 5


@pytest.mark.backend
@pytest.mark.parametrize("core", [c.name for c in clib.arm_cores()])
def test_core_cmake_builds_strict(lib, tmp_path, core):
    """arm-none-eabi-gcc through the library's own toolchain file: library, C99 and C++17 programs link."""
    proj = cmake_project(tmp_path / "app", lib.folder)
    b = tmp_path / "b"
    sh(["cmake", "-S", str(proj), "-B", str(b), f"-DCMAKE_TOOLCHAIN_FILE={lib.folder / 'cmake/arm-none-eabi.cmake'}",
        f"-DECG_CORE={core}", f"-DCMAKE_C_FLAGS={STRICT}", f"-DCMAKE_CXX_FLAGS={STRICT}",
        "-DCMAKE_BUILD_TYPE=Debug"])   # -O0 -g for the user's code; the library keeps -O2
    sh(["cmake", "--build", str(b)])
    for exe in ("run_one", "run_mv"):
        head = (b / exe).read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and head[18] == 40, exe   # e_machine EM_ARM
    attrs = sh(["arm-none-eabi-readelf", "-A", str(b / "run_one")]).stdout
    want_arch = {"cortex-m0": "v6S-M", "cortex-m3": "v7", "cortex-m4": "v7E-M", "cortex-m7": "v7E-M",
                 "cortex-m33": "v8-M.mainline", "cortex-m55": "v8.1-M.mainline"}[core]
    assert f"Tag_CPU_arch: {want_arch}" in attrs, attrs


@pytest.mark.backend
@pytest.mark.parametrize("reference", [True, False])
def test_makefile_host_and_arena_symbol(lib, tmp_path, reference):
    """`make` (host, reference kernels, the caller's arena, overwritten between inferences): bit-exact, and
    no arena of ours in the library."""
    c = tmp_path / "c"
    shutil.copytree(lib.folder, c)
    sh(["make", "-C", str(c), *(["REFERENCE=1"] if reference else []), "ARENA_SYMBOL=user_arena", f"CFLAGS={STRICT}"])
    a = c / "build/host/libecgedge_model.a"
    syms = sh(["nm", str(a)]).stdout
    assert " U user_arena" in syms and "ecg_arena" not in syms.replace("ecg_arena_bytes", "")
    main = tmp_path / "main.c"
    main.write_text("""#include <stdio.h>
#include <string.h>
#include "ecgedge_model.h"
_Alignas(16) int8_t user_arena[ECG_MODEL_ARENA_BYTES];
extern const uint32_t ecg_arena_bytes;
int main(int argc, char **argv) {
    static int8_t in[ECG_MODEL_INPUT_SIZE];
    int8_t out[ECG_MODEL_OUTPUT_SIZE];
    FILE *f = fopen(argv[argc - 1], "rb");
    if (ecg_arena_bytes != ECG_MODEL_ARENA_BYTES || !f) return 3;
    for (int k = 0; fread(in, 1, sizeof in, f) == sizeof in; ++k) {
        memset(user_arena, 0x5A + 17 * k, sizeof user_arena);   /* the app reuses the arena between calls */
        ecg_model_invoke(in, out);
        fwrite(out, 1, sizeof out, stdout);
    }
    return 0;
}
""")
    sh(["cc", "-std=c11", *STRICT.split(), f"-I{c / 'src'}", *(["-DECG_REFERENCE"] if reference else []), str(main), str(a),
        "-o", str(tmp_path / "app")])
    q = windows(MODEL, 12, seed=2)
    assert np.array_equal(run_windows(tmp_path / "app", q, tmp_path), tflm_outputs(MODEL, q))


ZEPHYR_API = """# The Zephyr build-system calls the module's CMakeLists.txt uses, mapped onto plain CMake (zephyr/cmake/extensions.cmake
# semantics: one library per zephyr_library_named, global include directories and definitions).
function(zephyr_library_named name)
  add_library(${name} STATIC)
  set(ZEPHYR_CURRENT_LIBRARY ${name} PARENT_SCOPE)
endfunction()
function(zephyr_library_sources)
  target_sources(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
function(zephyr_include_directories)
  include_directories(${ARGN})
  set_property(GLOBAL APPEND PROPERTY ZEPHYR_INCLUDES ${ARGN})
endfunction()
function(zephyr_compile_definitions)
  add_compile_definitions(${ARGN})
  set_property(GLOBAL APPEND PROPERTY ZEPHYR_DEFINES ${ARGN})
endfunction()
function(zephyr_compile_definitions_ifdef feature)
  if(${${feature}})
    zephyr_compile_definitions(${ARGN})
  endif()
endfunction()
function(zephyr_library_compile_definitions)
  target_compile_definitions(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
function(zephyr_library_compile_options)
  target_compile_options(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
"""


@pytest.mark.backend
def test_zephyr_module_cmake_builds_and_places_arena(lib, tmp_path):
    """The module's Kconfig through kconfiglib (the parser Zephyr uses) with CONFIG_ECGEDGE_MODEL=y and an arena
    section, its zephyr/CMakeLists.txt through the Zephyr calls it uses: builds, runs bit-exact, and the arena
    lands in that section."""
    import kconfiglib   # Zephyr's own Kconfig parser

    kconf = kconfiglib.Kconfig(str(lib.folder / "zephyr/Kconfig"), warn_to_stderr=False)
    assert kconf.warnings == []
    assert kconf.syms["ECGEDGE_MODEL"].set_value(2) and kconf.syms["ECGEDGE_MODEL_REFERENCE"].str_value == "n"
    assert kconf.syms["ECGEDGE_MODEL_ARENA_SECTION"].set_value(".ecg_test_arena")
    # as Zephyr does: the resolved configuration becomes CMake variables (bool y -> "y", n -> unset)
    config = "".join(f'set(CONFIG_{sym.name} "{sym.str_value}")\n' for sym in kconf.unique_defined_syms
                     if sym.str_value not in ("n", ""))
    proj = tmp_path / "zapp"
    proj.mkdir()
    (proj / "zephyr_api.cmake").write_text(ZEPHYR_API)
    (proj / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.13)
project(zapp C)
include(zephyr_api.cmake)
{config}
add_subdirectory("{lib.folder}/zephyr" ecgedge_module)
get_property(incs GLOBAL PROPERTY ZEPHYR_INCLUDES)
add_executable(app "{lib.folder}/extras/run_one.c")
target_include_directories(app PRIVATE ${{incs}})
target_link_libraries(app ecgedge_model)
""")
    sh(["cmake", "-S", str(proj), "-B", str(tmp_path / "b"), f"-DCMAKE_C_FLAGS={STRICT}"])
    sh(["cmake", "--build", str(tmp_path / "b")])
    q = windows(MODEL, 8, seed=9)
    assert np.array_equal(run_windows(tmp_path / "b/app", q, tmp_path), tflm_outputs(MODEL, q))
    table = sh(["objdump", "-t", str(tmp_path / "b/app")]).stdout
    row = next(line for line in table.splitlines() if line.rstrip().endswith(" ecg_arena"))
    assert ".ecg_test_arena" in row, row


@pytest.mark.backend
def test_arduino_src_compiles_as_the_arduino_builder_does(lib, tmp_path):
    """Arduino compiles every src/*.c with only src/ on the include path and its own flags (no
    -fno-strict-aliasing, -Os, gnu11): for a Cortex-M4F board (Nano 33 BLE class) and bit-exact on the host."""
    objs = []
    for f in sorted((lib.folder / "src").glob("*.c")):
        o = tmp_path / (f.stem + ".o")
        sh(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=softfp", "-Os",
            "-std=gnu11", "-ffunction-sections", "-fdata-sections", *STRICT.split(), f"-I{lib.folder / 'src'}",
            "-c", str(f), "-o", str(o)])
        objs.append(o)
    srcs = [str(f) for f in sorted((lib.folder / "src").glob("*.c"))]
    sh(["cc", "-Os", "-std=gnu11", *STRICT.split(), f"-I{lib.folder / 'src'}", *srcs,
        str(lib.folder / "extras/run_one.c"), "-o", str(tmp_path / "host")])
    q = windows(MODEL, 12, seed=13)
    assert np.array_equal(run_windows(tmp_path / "host", q, tmp_path), tflm_outputs(MODEL, q))
    ino = (lib.folder / "examples/ecgedge_infer/ecgedge_infer.ino").read_text()
    assert "#include <ecgedge_model.h>" in ino and "ecg_model_run_mv(" in ino and "ecg_model_verify()" in ino


@pytest.mark.backend
def test_sizes_per_core(lib, tmp_path):
    sizes = clib.measure_library(lib.folder)
    assert set(sizes) == {c.name for c in clib.arm_cores()}
    for core, s in sizes.items():
        assert s["arena_bytes"] == lib.arena_bytes, core
        assert s["rodata_bytes"] >= lib.const_bytes, core
        assert 2000 < s["text_bytes"] < 200_000, (core, s)
    ref = clib.measure_library(lib.folder, ["cortex-m4"], optimized=False)["cortex-m4"]
    assert ref["arena_bytes"] == lib.reference_arena_bytes


@pytest.mark.backend
def test_export_writes_library_and_report_sizes(exported_package):
    """edge-export's package writer: c/ in every MCU package, its files in the manifest, sizes per core."""
    pkg = Path(exported_package)
    c = pkg / "c"
    assert clib.layout_problems(c) == []
    rep = json.loads((pkg / "report.json").read_text())
    assert set(rep["c_library"]) == {core.name for core in clib.arm_cores()}
    for s in rep["c_library"].values():
        assert s["text_bytes"] > 0 and s["rodata_bytes"] > 0 and s["arena_bytes"] > 0
    assert rep["c_library_build"]["dir"] == "c" and rep["c_library_build"]["core"] == "cortex-m7"
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert "c/src/ecgedge_model.h" in manifest["artifacts"] and "c/CMakeLists.txt" in manifest["artifacts"]
    assert "| cortex-m7 |" in (c / "README.md").read_text()


def test_every_mcu_target_has_a_core_for_its_library():
    """The package writer builds c/ for every MCU target: each one's core must be in cores.toml."""
    from ecgedge.targets import load_targets

    got = {t.name: clib.core_for_target(t).name for t in load_targets().values() if t.is_mcu}
    assert got["cortex-m4"] == "cortex-m4" and got["cortex-m7"] == "cortex-m7" and got["cortex-m55"] == "cortex-m55"
    assert got["nucleo-f446re"] == "cortex-m4" and got["nrf52840-dk"] == "cortex-m4"
