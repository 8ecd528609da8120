"""JUnit XML for CI: one testcase per gate (failure when crossed, skipped when not measurable)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ecgedge.hil_tests.gates import GateResult


def write_junit(path: str | Path, results: list[GateResult], suite: str, seconds: float,
                error: str | None = None, properties: dict | None = None) -> Path:
    """Write the gates as a JUnit testsuite; `error` (a run that ended early) adds an errored testcase."""
    n_fail = sum(r.passed is False for r in results)
    n_skip = sum(r.passed is None for r in results)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results) + (error is not None)),
                       failures=str(n_fail), errors=str(int(error is not None)), skipped=str(n_skip),
                       time=f"{seconds:.3f}")
    if properties:
        props = ET.SubElement(ts, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", name=str(k), value=str(v))
    classname = f"hil.{suite}"
    if error is not None:
        tc = ET.SubElement(ts, "testcase", classname=classname, name="run", time=f"{seconds:.3f}")
        ET.SubElement(tc, "error", message=error, type="DeviceError").text = error
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=classname, name=r.name, time="0")
        if r.passed is False:
            ET.SubElement(tc, "failure", message=r.message, type="GateCrossed").text = (
                f"{r.description}\n{r.message}")
        elif r.passed is None:
            ET.SubElement(tc, "skipped", message=r.message)
        else:
            ET.SubElement(tc, "system-out").text = r.message
    p = Path(path)
    ET.ElementTree(root).write(p, encoding="utf-8", xml_declaration=True)
    return p
