"""Map the repository's top-level folders onto the one import name `ecgedge`.

`models/` installs as `ecgedge.models`, `tools/` as `ecgedge.tools`, ...: nothing bare lands in
site-packages. Packages and their data files are found by walking the folders, so no list is
kept by hand. `ecgedge/` holds a symbolic link to each folder (ecgedge/models -> ../models, ...) so
that a checkout has the installed layout for tools that walk it (import-linter, static checkers); the
walk skips links, so each folder is packaged once, from its own place.
"""

import os

from setuptools import setup

FOLDERS = ["models", "quantize", "calibration", "firmware_bridge", "device_sim", "edge_runtime",
           "hil_tests", "tools"]
SKIP_DIRS = {"__pycache__", "build", ".pytest_cache"}


def _walk(root: str, prefix: str):
    """Yield (package, dir, data files relative to dir) for every package under root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                       and not os.path.islink(os.path.join(dirpath, d))]
        if "__init__.py" not in filenames:
            continue
        rel = os.path.relpath(dirpath, root)
        pkg = prefix if rel == "." else prefix + "." + rel.replace(os.sep, ".")
        data = []
        # data: every non-Python file here and in sub-folders that are not packages themselves
        stack = [dirpath]
        while stack:
            d = stack.pop()
            for entry in sorted(os.listdir(d)):
                full = os.path.join(d, entry)
                if os.path.isdir(full):
                    if entry in SKIP_DIRS or entry.startswith(".") or os.path.islink(full):
                        continue
                    if not os.path.exists(os.path.join(full, "__init__.py")):
                        stack.append(full)
                elif not entry.endswith((".py", ".pyc")):
                    data.append(os.path.relpath(full, dirpath))
        yield pkg, dirpath, data


packages, package_dir, package_data = [], {}, {}
for root, prefix in [("ecgedge", "ecgedge")] + [(f, "ecgedge." + f) for f in FOLDERS]:
    for pkg, path, data in _walk(root, prefix):
        packages.append(pkg)
        package_dir[pkg] = path
        if data:
            package_data[pkg] = data

setup(packages=packages, package_dir=package_dir, package_data=package_data)
