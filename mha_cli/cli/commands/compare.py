"""``mha-explain compare``: attention_axes choices side by side, and whether they compute the same thing."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from mha_cli.cli.options import (
    DEFAULT_SCREEN,
    BackendOption,
    DebugOption,
    EveryChoice,
    JsonOption,
    MaxMemoryOption,
    Screen,
    layer_options,
    screen_options,
)
from mha_cli.cli.process import fail, guarded
from mha_cli.core.config import MHAConfig
from mha_cli.core.dense import DenseConfig
from mha_cli.core.errors import ExitCode
from mha_cli.core.gqa import GQAConfig


@screen_options
@layer_options(several_axes=True, kinds=True)
def compare_command(
    configs: list[MHAConfig] | EveryChoice | GQAConfig | DenseConfig,
    backend: BackendOption = "tensorflow",
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Compare from the shape algebra alone: no Keras, no outputs.")
    ] = False,
    run: Annotated[
        bool,
        typer.Option(
            "--run",
            help="With --axes all: run every choice through the real layer and compare the outputs "
            "(listed --axes always run, unless --no-run).",
        ),
    ] = False,
    kv_heads: Annotated[
        list[str] | None,
        typer.Option(
            "--kv-heads",
            metavar="N|all",
            help="--layer gqa: the num_key_value_heads to compare, given once each, or all (every divisor "
            "of --num-query-heads) [default: as many as the query heads (MHA), the given one, and 1 (MQA)].",
            show_default=False,
        ),
    ] = None,
    max_memory: MaxMemoryOption = "2GiB",  # type: ignore[assignment]
    json_output: JsonOption = False,
    screen: Screen = DEFAULT_SCREEN,
    debug: DebugOption = False,
) -> None:
    """Compare attention_axes choices side by side, from real forward passes.

    One column per --axes; every shape, equation and count, with the rows that
    differ marked. The configurations get identical weights and inputs, so the
    answer to "do they compute the same thing?" is their outputs' max |difference|.
    --axes all lists every legal choice for the input instead, a row each, and
    which of them compute the same function (from the algebra; --run verifies).
    --layer gqa puts MHA, GQA and MQA side by side; --layer dot or additive puts
    MultiHeadAttention, Attention and AdditiveAttention side by side on the same input.
    Exit codes: 0 answer (equal or not), 1 a check failed, 2 bad input, 3 environment.
    """
    if run and no_run:
        fail(ExitCode.BAD_INPUT, "--run and --no-run: give one of them")
    if isinstance(configs, DenseConfig):
        if kv_heads:
            fail(ExitCode.BAD_INPUT, f"--kv-heads: --layer {configs.kind} has no heads; give --layer gqa")
        _families(configs, backend, no_run, max_memory, json_output, screen, debug)
        return
    if isinstance(configs, GQAConfig):
        _heads(configs, kv_heads or [], backend, no_run, max_memory, json_output, screen, debug)
        return
    if kv_heads:
        fail(
            ExitCode.BAD_INPUT,
            "--kv-heads: MultiHeadAttention's key/value heads are its heads; give --layer gqa",
        )
    if isinstance(configs, EveryChoice):
        _every_choice(configs.base, backend, run, max_memory, json_output, screen, debug)
        return
    from mha_cli.operations.compare import compare

    if len(configs) < 2:
        fail(ExitCode.BAD_INPUT, "--axes: give two or more to compare, e.g. --axes 1 --axes none")
    comparison = guarded(lambda: compare(configs, backend, execute=not no_run, max_memory=max_memory), debug)
    from mha_cli.output import compare as shown
    from mha_cli.output.documents import compare as documents

    screen.answer(
        json_output,
        partial(documents.compare_document, comparison),
        partial(shown.render_compare, comparison),
    )
    failed = sorted({check.name for result in comparison.results for check in result.failed})
    if failed:
        fail(ExitCode.CHECK_FAILED, f"check failed: {', '.join(failed)} (see the explain output)")


def _every_choice(
    base: MHAConfig, backend: str, run: bool, max_memory: int, json_output: bool, screen: Screen, debug: bool
) -> None:
    from mha_cli.operations.explore import explore

    found = guarded(lambda: explore(base, backend, run=run, max_memory=max_memory), debug)
    from mha_cli.output import compare as shown
    from mha_cli.output.documents import compare as documents

    screen.answer(
        json_output, partial(documents.choices_document, found), partial(shown.render_choices, found)
    )
    if found.failures:
        fail(ExitCode.CHECK_FAILED, f"check failed: {found.failures[0]}")


def _families(
    config: DenseConfig,
    backend: str,
    no_run: bool,
    max_memory: int,
    json_output: bool,
    screen: Screen,
    debug: bool,
) -> None:
    """--layer dot|additive: MultiHeadAttention, Attention and AdditiveAttention on the same input."""
    from mha_cli.operations.families import compare_families

    found = guarded(
        lambda: compare_families(config, backend, execute=not no_run, max_memory=max_memory), debug
    )
    from mha_cli.output.documents.families import families_document
    from mha_cli.output.families import render_families

    screen.answer(json_output, partial(families_document, found), partial(render_families, found))
    failed = sorted({check.name for check in found.failed})
    if failed:
        fail(ExitCode.CHECK_FAILED, f"check failed: {', '.join(failed)} (see mha-explain --layer ...)")


def _heads(
    base: GQAConfig,
    asked: list[str],
    backend: str,
    no_run: bool,
    max_memory: int,
    json_output: bool,
    screen: Screen,
    debug: bool,
) -> None:
    """--layer gqa: MHA, GQA and MQA (or every --kv-heads) on the same input."""
    from mha_cli.operations.heads import compare_heads

    found = guarded(
        lambda: compare_heads(base, asked, backend, execute=not no_run, max_memory=max_memory), debug
    )
    from mha_cli.output.documents.heads import heads_document
    from mha_cli.output.heads import render_heads

    screen.answer(json_output, partial(heads_document, found), partial(render_heads, found))
    failed = sorted({check.name for result in found.results for check in result.failed})
    if failed:
        fail(ExitCode.CHECK_FAILED, f"check failed: {', '.join(failed)} (see mha-explain --layer gqa ...)")
