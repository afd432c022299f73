"""A pytest plugin: case files become test items, one per case.

Installed with mha-explain through the ``pytest11`` entry point, so a project's
plain ``pytest`` collects every ``*.mha.toml`` and ``*.mha.json`` it walks
past. Each case runs exactly as ``mha-explain check`` runs it and fails with
the same lines. Collection never imports Keras; the first case that runs does.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mha_cli.core.cases import CASE_FILE_SUFFIXES, Case, CaseFileError, load
from mha_cli.core.errors import ConfigError
from mha_cli.core.grammar import parse_bytes
from mha_cli.operations.check import CaseResult, CaseStatus, check_model, run_case
from mha_cli.operations.explain import DEFAULT_MAX_MEMORY


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mha-explain", "MultiHeadAttention case files (mha-explain)")
    group.addoption(
        "--mha-backend",
        default=None,
        help="Keras backend for case files [default: $KERAS_BACKEND, else tensorflow].",
    )
    group.addoption(
        "--mha-strict",
        action="store_true",
        default=False,
        help="Fail cases that have no expect block (they are skipped otherwise).",
    )
    group.addoption(
        "--mha-max-memory",
        default=None,
        help="Skip a case's forward pass when it would need more, e.g. 512MiB [default: 2GiB].",
    )


_MAX_MEMORY = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mha_explain: a case from an mha-explain case file (runs the real Keras layer)"
    )
    memory = config.getoption("mha_max_memory", None)
    try:
        config.stash[_MAX_MEMORY] = (
            DEFAULT_MAX_MEMORY if memory is None else parse_bytes("--mha-max-memory", memory)
        )
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(CASE_FILE_SUFFIXES):
        return CaseFileCollector.from_parent(parent, path=file_path)
    return None


class CaseFileCollector(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            case_file = load(self.path)
        except CaseFileError as error:
            raise self.CollectError(str(error)) from None
        self.model = case_file.model
        self._model_results: list[CaseResult] | None = None
        if case_file.model is not None:
            # One item per pinned call, and one for the calls the file does not pin (new ones),
            # all from one scan of the model.
            for pinned in case_file.model.pinned or ():
                yield ModelCallItem.from_parent(self, name=pinned.key, key=pinned.key, line=pinned.line)
            yield ModelCallItem.from_parent(
                self, name="[model] unpinned calls", key=None, line=case_file.model.line
            )
            return
        for case in case_file.cases:
            yield CaseItem.from_parent(self, name=case.name, case=case)
        for problem in case_file.problems:
            name = problem.case or f"line {problem.line}"
            yield InvalidCaseItem.from_parent(self, name=name, problem=problem)

    def model_results(self) -> list[CaseResult]:
        """The file's model, scanned once and held against its [calls] (check_model)."""
        if self._model_results is None:
            assert self.model is not None
            config = self.config
            self._model_results = check_model(
                self.path, self.model, _backend(config), max_memory=config.stash[_MAX_MEMORY]
            )
        return self._model_results


#: Where the frameworks the cases run warn about their own internals (numpy 2's __array__ copy
#: keyword, Keras's softmax over size-1 axes): noise in a user's test report, not about their cases.
_FRAMEWORKS = r"(keras|tf_keras|tensorflow|jax|jaxlib|torch|numpy)(\.|$)"


@contextlib.contextmanager
def _frameworks_quiet() -> Iterator[None]:
    """The frameworks' own DeprecationWarning, FutureWarning and UserWarning silenced, for one item."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_FRAMEWORKS)
        yield


def _backend(config: pytest.Config) -> str:
    return str(config.getoption("mha_backend") or os.environ.get("KERAS_BACKEND", "tensorflow"))


class CaseDiffers(Exception):
    """A case did not pass: where it is and the lines check would print for it."""

    def __init__(self, location: str, explanation: list[str]) -> None:
        # pytest's short summary shows the first line: the location and the first problem.
        self.lines = [f"{location}: {explanation[0]}", *explanation[1:]]
        super().__init__("\n".join(self.lines))


class _CaseFileItem(pytest.Item):
    def location_of(self, line: int) -> str:
        """``file:line: case 'name'`` with the file relative to pytest's rootdir, as pytest shows paths."""
        return f"{os.path.relpath(self.path, self.config.rootpath)}:{line}: case {self.name!r}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseDiffers):
            return "\n".join(excinfo.value.lines)
        return str(super().repr_failure(excinfo, style=style))


class CaseItem(_CaseFileItem):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker("mha_explain")  # so -m "not mha_explain" leaves case files out

    def runtest(self) -> None:
        config = self.config
        with _frameworks_quiet():
            result = run_case(self.case, _backend(config), max_memory=config.stash[_MAX_MEMORY])
        self.judge(result)

    def judge(self, result: CaseResult) -> None:
        if result.status is CaseStatus.UNRECORDED and not self.config.getoption("mha_strict"):
            pytest.skip(result.explanation()[0])
        if result.status is not CaseStatus.PASSED:
            raise CaseDiffers(self.location_of(result.line), result.explanation())

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"case {self.case.name!r}"


class ModelCallItem(CaseItem):
    """One call a [model] file pins (``key``), or, with ``key`` None, the calls it does not pin."""

    def __init__(self, *, key: str | None, line: int, **kwargs: Any) -> None:
        _CaseFileItem.__init__(self, **kwargs)
        self.key, self.line = key, line
        self.add_marker("mha_explain")

    def runtest(self) -> None:
        collector = self.parent
        assert isinstance(collector, CaseFileCollector) and collector.model is not None
        with _frameworks_quiet():
            results = collector.model_results()
        pinned = {call.key for call in collector.model.pinned or ()}
        unusable = [r for r in results if r.name == "[model]"]  # the model could not be scanned
        if unusable:
            self.judge(unusable[0])
        if self.key is not None:
            (result,) = [r for r in results if r.name == self.key]
            self.judge(result)
            return
        others = [r for r in results if r.name not in pinned]
        if not others:
            return
        failing = [r for r in others if r.status in (CaseStatus.FAILED, CaseStatus.ERROR)]
        for result in failing or others:
            self.judge(result)

    def location_of(self, line: int) -> str:
        return f"{os.path.relpath(self.path, self.config.rootpath)}:{line}: call {self.name!r}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line - 1, f"call {self.name!r}"


class InvalidCaseItem(_CaseFileItem):
    """A case the file states wrongly: it fails with its file:line; the others still run."""

    def __init__(self, *, problem: CaseFileError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self) -> None:
        raise CaseDiffers(self.location_of(self.problem.line), [self.problem.problem])

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.problem.line - 1, f"case {self.name!r}"
