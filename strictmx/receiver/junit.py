"""JUnit XML, the report format CI systems (GitHub, GitLab, Jenkins) render as test results.

The de-facto schema: `<testsuites>` holding one `<testsuite>` with `tests`, `failures`,
`errors` and `time` counts, each `<testcase>` named by `classname` and `name`, failed by a
`<failure message=...>` (an expectation not met) or an `<error message=...>` (it could
not be run), with details in the element's text and in `<system-out>`.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# XML 1.0 allows no control characters but TAB, LF and CR, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("?", text)


@dataclass
class TestCase:
    __test__ = False  # not a pytest test class, whatever its name

    name: str
    classname: str
    seconds: float = 0.0
    #: (message, details) of an expectation that was not met.
    failure: tuple[str, str] | None = None
    #: (message, details) of a case that could not be run at all.
    error: tuple[str, str] | None = None
    output: str = ""


def document(
    suite: str, cases: list[TestCase], *, timestamp: datetime, file: str | None = None
) -> bytes:
    """The XML document for one suite of `cases`."""
    failures = sum(1 for c in cases if c.failure and not c.error)
    errors = sum(1 for c in cases if c.error)
    seconds = f"{sum(c.seconds for c in cases):.3f}"
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": _xml_text(suite), **counts, "time": seconds})
    attrs = {
        "name": _xml_text(suite),
        **counts,
        "skipped": "0",
        "time": seconds,
        "timestamp": timestamp.isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
    }
    element = ET.SubElement(root, "testsuite", attrs)
    for case in cases:
        case_attrs = {
            "classname": _xml_text(case.classname),
            "name": _xml_text(case.name),
            "time": f"{case.seconds:.3f}",
        }
        if file:
            case_attrs["file"] = _xml_text(file)
        item = ET.SubElement(element, "testcase", case_attrs)
        for tag, outcome in (("error", case.error), ("failure", case.failure)):
            if outcome is not None:
                message, details = outcome
                kind = "strictmx.session" if tag == "error" else "strictmx.mismatch"
                found = ET.SubElement(item, tag, {"message": _xml_text(message), "type": kind})
                found.text = _xml_text(details)
                break
        if case.output:
            ET.SubElement(item, "system-out").text = _xml_text(case.output)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write(path: Path, data: bytes) -> None:
    """Write a report, creating its directory (CI jobs name paths such as reports/x.xml)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
