"""JUnit XML for a check report, the format CI systems render as test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import PurePath

from mha_cli.operations.check import CaseStatus, CheckReport


def _classname(path: PurePath) -> str:
    """``examples/seeds.mha.toml`` -> ``examples.seeds``: where a CI groups the cases."""
    name = path.name
    for suffix in (".mha.toml", ".mha.json", ".toml", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    folders = [part for part in path.parent.parts if part not in (path.anchor, ".")]
    return ".".join((*folders, name))


def junit_xml(report: CheckReport, *, strict: bool = False) -> str:
    """One <testsuite> per file, one <testcase> per case.

    A differing case is a <failure>, an invalid one an <error>; a case without
    expectations is <skipped> (a <failure> with ``strict``, as the exit code).
    """
    root = ET.Element("testsuites", name="mha-explain check", time=f"{report.seconds:.3f}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for file in report.files:
        suite = ET.SubElement(root, "testsuite", name=str(file.path))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="backend", value=report.backend)
        if report.keras_version is not None:
            ET.SubElement(properties, "property", name="keras_version", value=report.keras_version)
        note = report.version_note(file)
        if note is not None:
            ET.SubElement(properties, "property", name="version_note", value=note)
        if file.error is not None:
            case = ET.SubElement(suite, "testcase", classname=_classname(file.path), name=file.path.name)
            ET.SubElement(case, "error", message=file.error).text = file.error
            counts["tests"] += 1
            counts["errors"] += 1
        for result in file.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_classname(file.path),
                name=result.name,
                file=str(result.path),
                line=str(result.line),
                time=f"{result.seconds:.3f}",
            )
            counts["tests"] += 1
            lines = result.explanation()
            if result.status is CaseStatus.FAILED or (strict and result.status is CaseStatus.UNRECORDED):
                ET.SubElement(case, "failure", message=lines[0]).text = "\n".join(lines)
                counts["failures"] += 1
            elif result.status is CaseStatus.ERROR:
                ET.SubElement(case, "error", message=lines[0]).text = "\n".join(lines)
                counts["errors"] += 1
            elif result.status is CaseStatus.UNRECORDED:
                ET.SubElement(case, "skipped", message=lines[0])
                counts["skipped"] += 1
        seconds = sum(result.seconds for result in file.results)
        suite.attrib.update({key: str(value) for key, value in counts.items()}, time=f"{seconds:.3f}")
        for key in totals:
            totals[key] += counts[key]
    root.attrib.update({key: str(value) for key, value in totals.items()})
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
