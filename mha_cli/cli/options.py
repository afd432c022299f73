"""The options, declared once: the layer's arguments that explain and compare share, and the rest.

:func:`layer_options` puts the layer's options into a command's signature and
hands the command one :class:`MHAConfig` (or one per ``--axes``, for compare),
as sqlite-utils' ``output_options`` does for its flags. Every converter turns a
bad value into :class:`BadValue`, whose line is the core's own
``--option value: problem``, with the value quoted as the user typed it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mha_cli.core.config import BACKENDS, DTYPES, MHAConfig
from mha_cli.core.dense import DENSE_CLASSES, SCORE_MODES, DenseConfig
from mha_cli.core.errors import ConfigError
from mha_cli.core.gqa import GQAConfig
from mha_cli.core.grammar import (
    ALL_AXES,
    parse_axes,
    parse_axes_or_all,
    parse_bytes,
    parse_int,
    parse_mask_shape,
    parse_names,
    parse_shape,
    quoted,
)
from mha_cli.core.kinds import KINDS
from mha_cli.output import PIPED_WIDTH

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: What the user typed for each option in this invocation, as text: an error the
#: core raises later about ``--axes`` quotes ``3``, not the parsed ``(3,)``.
#: None for an option given several values (compare's ``--axes``): the error
#: then shows the value it is about, as the core resolved it. Cleared when an
#: invocation starts (mha_cli.cli.app).
typed: dict[str, str | None] = {}


class BadValue(typer.BadParameter):
    """A value a converter refused; it prints as the ConfigError it carries."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.problem)
        self.error = error


def as_typed(error: ConfigError) -> str:
    """``error``'s line with the value the user typed for its option, when they typed one."""
    text = typed.get(error.option)
    return str(error) if text is None else f"{error.option} {quoted(text)}: {error.problem}"


def converter(parse: Callable[[str, str], T], option: str) -> Callable[[str], T]:
    """Adapt one of mha_cli.core.grammar's parsers to typer, keeping its message."""

    def convert(text: str) -> T:
        if not isinstance(text, str):  # typer passes defaults through as-is
            return text
        typed[option] = text if typed.get(option, text) == text else None
        try:
            return parse(option, text)
        except ConfigError as error:
            raise BadValue(error) from None

    return convert


def _positive(option: str) -> Callable[[str], int]:
    return converter(lambda opt, text: parse_int(opt, text, minimum=1), option)


def _choose(option: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def choose(option: str, text: str) -> str:
        if text not in choices:
            raise ConfigError(option, quoted(text), f"not one of {', '.join(choices)}")
        return text

    return converter(choose, option)


def _keras_major(option: str, text: str) -> int:
    if text.strip() not in ("2", "3"):
        raise ConfigError(option, quoted(text), "choose 3 (the keras package) or 2 (tf_keras)")
    return int(text)


#: ``--keras all`` (explain): Keras 3 and Keras 2 side by side.
ALL_KERAS = "all"


def _keras_major_or_all(option: str, text: str) -> int | str:
    if text.strip() == ALL_KERAS:
        return ALL_KERAS
    if text.strip() not in ("2", "3"):
        raise ConfigError(
            option, quoted(text), "choose 3 (the keras package), 2 (tf_keras) or all (both, side by side)"
        )
    return int(text)


def _rate(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(option, quoted(text), "not a number; expected a rate in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(option, quoted(text), "a dropout rate must be in [0, 1)")
    return value


# --- Options of several commands -----------------------------------------------------

#: --help sections (GroupedCommand prints the options under these, in this order).
LAYER, INPUTS, RUN, OUTPUT = "The layer", "The inputs and masks", "The run", "The output"


def _complete(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Shell completion of a closed choice (the converters are functions, so click cannot list it)."""
    return lambda incomplete: [choice for choice in choices if choice.startswith(incomplete)]


def _backend_option(choices: tuple[str, ...], help_text: str) -> Any:
    return typer.Option(
        "--backend",
        metavar="|".join(choices),
        parser=_choose("--backend", choices),
        autocompletion=_complete(choices),
        envvar="KERAS_BACKEND",
        show_envvar=True,
        help=help_text,
        rich_help_panel=RUN,
    )


BackendOption = Annotated[str, _backend_option(BACKENDS, "Keras backend.")]
AnyBackendOption = Annotated[
    str,
    _backend_option(
        (*BACKENDS, "all"), "Keras backend; all: every installed one, each in its own process, compared."
    ),
]
MaxMemoryOption = Annotated[
    int,
    typer.Option(
        "--max-memory",
        metavar="SIZE",
        parser=converter(parse_bytes, "--max-memory"),
        help="Skip the forward pass when it would need more (e.g. 512MiB).",
        rich_help_panel=RUN,
    ),
]
DebugOption = Annotated[
    bool,
    typer.Option(
        "--debug", help="Show tracebacks and the backend's captured log output.", rich_help_panel=RUN
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON document (schema in docs/scripts.md).", rich_help_panel=OUTPUT
    ),
]
ReportJsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the report as one JSON document (schema in docs/scripts.md).",
        rich_help_panel=OUTPUT,
    ),
]
CaseFilesArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="FILE",
        help="Case files (.toml or .json), or directories holding *.mha.toml / *.mha.json.",
        show_default=False,
    ),
]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "-k",
        metavar="PATTERN",
        help="Only the cases whose file::name contains PATTERN, in any case (a glob if it has * ? or [).",
    ),
]


# --- The layer's arguments ------------------------------------------------------------

_AXES_HELP = "attention_axes: 1, 1,2, -2, (1,), [1, 2] or none (all axes but batch, heads, features)."
_SINGLE_AXES = inspect.Parameter(
    "axes",
    inspect.Parameter.KEYWORD_ONLY,
    default="none",
    annotation=Annotated[
        Any,
        typer.Option(
            "--axes",
            metavar="AXES",
            parser=converter(parse_axes, "--axes"),
            help=_AXES_HELP,
            rich_help_panel=LAYER,
        ),
    ],
)
_SEVERAL_AXES = inspect.Parameter(
    "axes",
    inspect.Parameter.KEYWORD_ONLY,
    default=[],  # compare says how many it needs (and --layer gqa needs none)
    annotation=Annotated[
        list[Any],
        typer.Option(
            "--axes",
            metavar="AXES",
            parser=converter(parse_axes_or_all, "--axes"),
            help="Give it twice or more, one per configuration, or once as all (every legal choice "
            "for the input): " + _AXES_HELP,
            show_default=False,
            rich_help_panel=LAYER,
        ),
    ],
)


def _shape_option(option: str, help_text: str, panel: str = INPUTS) -> Any:
    return typer.Option(
        option, metavar="SHAPE", parser=converter(parse_shape, option), help=help_text, rich_help_panel=panel
    )


def _int_option(option: str, help_text: str, panel: str = LAYER) -> Any:
    return typer.Option(
        option, metavar="INT", parser=_positive(option), help=help_text, rich_help_panel=panel
    )


#: (MHAConfig field, annotation, default), in the order --help lists them; ``axes`` goes after the first.
_LAYER: tuple[tuple[str, Any, Any], ...] = (
    (
        "query_shape",
        Annotated[
            Any,
            _shape_option(
                "--shape",
                "Query shape without the batch axis, e.g. 32,64,4. Self-attention unless --value-shape.",
            ),
        ],
        inspect.Parameter.empty,
    ),
    ("num_heads", Annotated[int | None, _int_option("--num-heads", "num_heads [default: 2].")], None),
    (
        "key_dim",
        Annotated[
            int | None,
            _int_option("--key-dim", "key_dim [default: query features // num_heads, at least 1]."),
        ],
        None,
    ),
    ("value_dim", Annotated[int | None, _int_option("--value-dim", "value_dim [default: key_dim].")], None),
    (
        "value_shape",
        Annotated[
            Any,
            _shape_option("--value-shape", "Value shape without batch (cross-attention) [default: --shape]."),
        ],
        None,
    ),
    (
        "key_shape",
        Annotated[Any, _shape_option("--key-shape", "Key shape without batch [default: --value-shape].")],
        None,
    ),
    (
        "output_shape",
        Annotated[
            Any,
            _shape_option(
                "--output-shape",
                "output_shape: an int or a tuple such as 3,2 [default: the query's feature size].",
                LAYER,
            ),
        ],
        None,
    ),
    (
        "use_bias",
        Annotated[bool, typer.Option("--bias/--no-bias", help="use_bias.", rich_help_panel=LAYER)],
        True,
    ),
    (
        "use_gate",
        Annotated[bool, typer.Option("--gate", help="use_gate (Keras >= 3.14).", rich_help_panel=LAYER)],
        False,
    ),
    (
        "dropout",
        Annotated[
            float,
            typer.Option(
                "--dropout",
                metavar="RATE",
                parser=converter(_rate, "--dropout"),
                help="dropout (inference pass: no effect on shapes).",
                rich_help_panel=LAYER,
            ),
        ],
        0.0,
    ),
    (
        "dtype",
        Annotated[
            str,
            typer.Option(
                "--dtype",
                metavar="|".join(DTYPES),
                parser=_choose("--dtype", DTYPES),
                autocompletion=_complete(DTYPES),
                help="Layer dtype.",
                rich_help_panel=LAYER,
            ),
        ],
        "float32",
    ),
    ("batch", Annotated[int, _int_option("--batch", "Concrete batch size of the forward pass.", INPUTS)], 2),
    (
        "seed",
        Annotated[
            int,
            typer.Option(
                "--seed",
                metavar="INT",
                parser=converter(lambda o, t: parse_int(o, t, minimum=0), "--seed"),
                help="Seed for weights and inputs.",
                rich_help_panel=INPUTS,
            ),
        ],
        0,
    ),
    (
        "axis_names",
        Annotated[
            Any,
            typer.Option(
                "--axis-names",
                metavar="NAMES",
                parser=converter(parse_names, "--axis-names"),
                help="Names for the axes between batch and features, e.g. height,width.",
                rich_help_panel=INPUTS,
            ),
        ],
        None,
    ),
    (
        "mask_shape",
        Annotated[
            Any,
            typer.Option(
                "--mask-shape",
                metavar="SHAPE",
                parser=converter(parse_mask_shape, "--mask-shape"),
                help="Call with an attention_mask of this shape, batch included (None,10,10 or 10,10); "
                "checked by running the layer with a random mask.",
                rich_help_panel=INPUTS,
            ),
        ],
        None,
    ),
    (
        "causal",
        Annotated[
            bool, typer.Option("--causal", help="Call with use_causal_mask=True.", rich_help_panel=INPUTS)
        ],
        False,
    ),
    (
        "sliding_window",
        Annotated[
            int | None,
            _int_option(
                "--sliding-window",
                "sliding_window (Keras >= 3.15): attend within INT-1 positions either side.",
            ),
        ],
        None,
    ),
    (
        "keras",
        Annotated[
            int,
            typer.Option(
                "--keras",
                metavar="3|2",
                parser=converter(_keras_major, "--keras"),
                help="Which Keras runs the layer: 3 (keras) or 2 (tf_keras, with Keras 2's rules; "
                "pip install 'mha-explain[keras2]').",
                rich_help_panel=RUN,
            ),
        ],
        3,
    ),
)
_LAYER_FIELDS = tuple(name for name, _, _ in _LAYER)
#: --layer's choices: the kinds (mha_cli.core.kinds), then Attention and AdditiveAttention (core/dense.py).
LAYER_CHOICES = (*KINDS, *DENSE_CLASSES)
#: --layer: which Keras attention layer (mha_cli.core.kinds), and the options only GroupQueryAttention has.
_LAYER_KIND = inspect.Parameter(
    "layer",
    inspect.Parameter.KEYWORD_ONLY,
    default="mha",
    annotation=Annotated[
        str,
        typer.Option(
            "--layer",
            metavar="|".join(LAYER_CHOICES),
            parser=_choose("--layer", LAYER_CHOICES),
            autocompletion=_complete(LAYER_CHOICES),
            help="Which layer: mha (keras.layers.MultiHeadAttention), gqa "
            "(keras.layers.GroupQueryAttention, rank-3 inputs; see docs/gqa.md), dot "
            "(keras.layers.Attention) or additive (keras.layers.AdditiveAttention; both: docs/attention.md).",
            rich_help_panel=LAYER,
        ),
    ],
)
_GQA: tuple[tuple[str, Any, Any], ...] = (
    (
        "num_query_heads",
        Annotated[int | None, _int_option("--num-query-heads", "--layer gqa: num_query_heads [default: 4].")],
        None,
    ),
    (
        "num_key_value_heads",
        Annotated[
            int | None,
            _int_option(
                "--num-key-value-heads",
                "--layer gqa: num_key_value_heads, a divisor of num_query_heads [default: 2, or 1].",
            ),
        ],
        None,
    ),
    (
        "head_dim",
        Annotated[
            int | None,
            _int_option("--head-dim", "--layer gqa: head_dim [default: query features // num_query_heads]."),
        ],
        None,
    ),
)
_GQA_FIELDS = tuple(name for name, _, _ in _GQA)
#: The options only Attention and AdditiveAttention have (--layer dot|additive).
_DENSE: tuple[tuple[str, Any, Any], ...] = (
    (
        "use_scale",
        Annotated[
            bool | None,
            typer.Option(
                "--use-scale/--no-use-scale",
                help="--layer dot|additive: use_scale [default: Attention False, AdditiveAttention True].",
                show_default=False,
                rich_help_panel=LAYER,
            ),
        ],
        None,
    ),
    (
        "score_mode",
        Annotated[
            str | None,
            typer.Option(
                "--score-mode",
                metavar="|".join(SCORE_MODES),
                parser=_choose("--score-mode", SCORE_MODES),
                autocompletion=_complete(SCORE_MODES),
                help="--layer dot: score_mode [default: dot].",
                rich_help_panel=LAYER,
            ),
        ],
        None,
    ),
    (
        "query_mask",
        Annotated[
            bool,
            typer.Option(
                "--query-mask",
                help="--layer dot|additive: call with mask=[query_mask, ...], a (batch, Tq) padding mask.",
                rich_help_panel=INPUTS,
            ),
        ],
        False,
    ),
    (
        "value_mask",
        Annotated[
            bool,
            typer.Option(
                "--value-mask",
                help="--layer dot|additive: call with mask=[..., value_mask], a (batch, Tv) padding mask.",
                rich_help_panel=INPUTS,
            ),
        ],
        False,
    ),
)
_DENSE_FIELDS = tuple(name for name, _, _ in _DENSE)
#: What a MultiHeadAttention option left alone holds: any other value was given (--layer dot refuses it).
_MHA_ONLY_DEFAULTS: dict[str, Any] = {
    "num_heads": None,
    "key_dim": None,
    "value_dim": None,
    "output_shape": None,
    "use_bias": True,
    "use_gate": False,
    "axis_names": None,
    "mask_shape": None,
    "sliding_window": None,
}
#: scan's --keras: which Keras loads the model (3|2); all: Keras 2 loads it, each layer tried in Keras 3.
ScanKerasOption = Annotated[
    Any,
    typer.Option(
        "--keras",
        metavar="3|2|all",
        parser=converter(_keras_major_or_all, "--keras"),
        help="Which Keras loads and runs the model: 3 (keras), 2 (tf_keras: Keras 2 .h5 and tf.keras JSON "
        "files; pip install 'mha-explain[keras2]'), or all: as 2, and each attention layer's config "
        "loaded in Keras 3 and run on the same weights (what a migration must change).",
    ),
]
#: explain's --keras, which also takes all.
_KERAS_OR_ALL = Annotated[
    Any,
    typer.Option(
        "--keras",
        metavar="3|2|all",
        parser=converter(_keras_major_or_all, "--keras"),
        help="Which Keras runs the layer: 3 (keras), 2 (tf_keras, with Keras 2's rules; "
        "pip install 'mha-explain[keras2]'), or all: both on identical weights, every difference named.",
        rich_help_panel=RUN,
    ),
]


def _flag(annotation: Any) -> str:
    """The option as --help names it (``--num-heads``, ``--bias/--no-bias``), from its typer.Option."""
    info = annotation.__metadata__[0]
    first = (
        info.default
        if isinstance(info.default, str) and info.default.startswith("-")
        else info.param_decls[0]
    )
    return str(first)


#: The layer's options by parameter name, for saying which were given (--jsonl refuses them).
LAYER_OPTION_NAMES = {
    "axes": "--axes",
    **{name: _flag(annotation) for name, annotation, _ in _LAYER},
    "layer": "--layer",
    **{name: _flag(annotation) for name, annotation, _ in _GQA},
    **{name: _flag(annotation).split("/")[0] for name, annotation, _ in _DENSE},
}


def _replace_parameter(
    command: F, target: str, options: list[inspect.Parameter], build: Callable[[dict[str, Any]], Any]
) -> F:
    """``command`` with its parameter ``target`` replaced by ``options`` in --help and the signature.

    When it runs, ``build`` takes the options' values out of the keyword
    arguments and returns what ``target`` receives.
    """
    signature = inspect.signature(command, eval_str=True)
    own = list(signature.parameters.values())
    at = next(i for i, parameter in enumerate(own) if parameter.name == target)
    # Keyword-only, so the options may follow the command's own ones with or without defaults.
    parameters = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in [*own[:at], *options, *own[at + 1 :]]
    ]

    @functools.wraps(command)
    def with_target(**given: Any) -> Any:
        given[target] = build(given)
        return command(**given)

    with_target.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_target.__annotations__ = {
        **{parameter.name: parameter.annotation for parameter in parameters},
        "return": signature.return_annotation,
    }
    return with_target  # type: ignore[return-value]


@dataclass(frozen=True)
class EveryKeras:
    """explain's ``--keras all``: the configuration ``base`` under Keras 3 and Keras 2."""

    base: MHAConfig


@dataclass(frozen=True)
class EveryChoice:
    """compare's ``--axes all``: the layer and inputs of ``base``, with every attention_axes choice."""

    base: MHAConfig


def layer_options(
    *,
    several_axes: bool = False,
    shape_optional: bool = False,
    every_keras: bool = False,
    kinds: bool = False,
) -> Callable[[F], F]:
    """Give the decorated command the layer's options, and call it with the configuration they state.

    The command declares a parameter ``config`` (one ``--axes``) or, with
    ``several_axes``, ``configs`` (``--axes`` given once per configuration);
    --help lists ``--shape``, ``--axes`` and the rest of the layer's options in
    its place. The configurations are built here, from one place, but not
    validated: the operation's derivation does that. With ``shape_optional``
    (explain, whose --jsonl reads configurations instead), ``config`` is None
    when --shape is not given, and the command says what is missing. With
    ``every_keras``, ``--keras all`` gives ``config`` as an :class:`EveryKeras`. With ``kinds``,
    ``--layer`` chooses the layer kind, and ``--layer gqa`` gives a :class:`GQAConfig` built from the
    options GroupQueryAttention shares with MultiHeadAttention and its own; an option only the other
    kind has is refused in one line.
    """
    target = "configs" if several_axes else "config"
    layer = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _LAYER
    ]
    if shape_optional:
        layer[0] = layer[0].replace(default=None)
    if every_keras:
        layer = [p.replace(annotation=_KERAS_OR_ALL) if p.name == "keras" else p for p in layer]
    options = [layer[0], _SEVERAL_AXES if several_axes else _SINGLE_AXES, *layer[1:]]
    if kinds:
        options[1:1] = [
            _LAYER_KIND,
            *(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
                for name, annotation, default in (*_GQA, *_DENSE)
            ),
        ]

    def build(
        given: dict[str, Any],
    ) -> MHAConfig | GQAConfig | DenseConfig | list[MHAConfig] | EveryChoice | EveryKeras | None:
        kind = given.pop("layer", "mha")
        own = {name: given.pop(name, None) for name in _GQA_FIELDS}
        dense = {name: given.pop(name, None) for name in _DENSE_FIELDS}
        if kind in DENSE_CLASSES:
            return _dense_config(kind, given, own, dense)
        if kinds:
            _refuse_dense_options(kind, dense)
        others = (
            LAYER_OPTION_NAMES[name] for k in KINDS.values() if k.name != kind for name in k.own_arguments
        )
        # --axes's default passes through its parser too (as "none"): given means not none, or not empty.
        axes_given = given["axes"] not in (None, [])
        other = next((o for o in others if (axes_given if o == "--axes" else o in typed)), None)
        if other is not None:
            layer = KINDS[kind].keras_class
            problem = f"{layer} has no such argument; leave it out, or use the --layer that has it"
            raise BadValue(ConfigError(other, None, f"--layer {kind}: {problem}"))
        if kind == "gqa":
            return _gqa_config(given, own)
        axes = given.pop("axes")
        if given["query_shape"] is None:  # only when shape_optional
            for name in _LAYER_FIELDS:
                given.pop(name)
            return None
        every = given["keras"] == ALL_KERAS
        if every:
            given["keras"] = 3
        base = MHAConfig(**{name: given.pop(name) for name in _LAYER_FIELDS})
        if every:
            return EveryKeras(replace(base, attention_axes=axes))
        if several_axes and ALL_AXES in axes:
            if len(axes) > 1:
                problem = "all stands for every choice, so give it alone, without other --axes"
                raise BadValue(ConfigError("--axes", ALL_AXES, problem))
            return EveryChoice(base)
        if several_axes:
            return [replace(base, attention_axes=choice) for choice in axes]
        return replace(base, attention_axes=axes)

    return lambda command: _replace_parameter(command, target, options, build)


def _refuse_dense_options(kind: str, dense: dict[str, Any]) -> None:
    """--layer mha|gqa: an option only Attention and AdditiveAttention have, in one line."""
    for name in _DENSE_FIELDS:
        given = dense[name] is not None if name in ("use_scale", "score_mode") else bool(dense[name])
        if given:
            layer = KINDS[kind].keras_class
            problem = f"{layer} has no such argument; only --layer dot|additive has it"
            option = "--no-use-scale" if dense[name] is False else LAYER_OPTION_NAMES[name]  # as typed
            raise BadValue(ConfigError(option, None, f"--layer {kind}: {problem}"))


def _dense_config(
    kind: str, given: dict[str, Any], gqa: dict[str, Any], dense: dict[str, Any]
) -> DenseConfig | None:
    """--layer dot|additive: the options Attention and AdditiveAttention take; MultiHeadAttention's and
    GroupQueryAttention's own are refused in one line naming the option."""
    fields = {name: given.pop(name) for name in _LAYER_FIELDS}
    axes = given.pop("axes")
    layer = DENSE_CLASSES[kind]
    refused = [
        LAYER_OPTION_NAMES[n].split("/")[-1 if fields[n] is False else 0]  # --no-bias as typed
        for n, default in _MHA_ONLY_DEFAULTS.items()
        if fields[n] != default
    ]
    refused += [LAYER_OPTION_NAMES[n] for n in _GQA_FIELDS if gqa[n] is not None]
    if axes not in (None, []):
        refused.insert(0, "--axes")
    if refused:
        option = refused[0]
        problem = f"{layer} has no such argument (no projections, no heads, attention along axis 1)"
        if option == "--mask-shape":
            problem = (
                f"{layer} takes its masks as a list, mask=[query_mask, value_mask]: "
                "give --query-mask, --value-mask"
            )
        raise BadValue(ConfigError(option, None, f"--layer {kind}: {problem}"))
    if fields["keras"] != 3:
        problem = f"--layer {kind} runs Keras 3's {layer}; leave --keras out (or give 3)"
        raise BadValue(ConfigError("--keras", fields["keras"], problem))
    if fields["query_shape"] is None:  # only when shape_optional
        return None
    return DenseConfig(
        kind=kind,
        query_shape=fields["query_shape"],
        value_shape=fields["value_shape"],
        key_shape=fields["key_shape"],
        dropout=fields["dropout"],
        dtype=fields["dtype"],
        batch=fields["batch"],
        seed=fields["seed"],
        causal=fields["causal"],
        use_scale=dense["use_scale"],
        score_mode=dense["score_mode"],
        query_mask=bool(dense["query_mask"]),
        value_mask=bool(dense["value_mask"]),
    )


def _gqa_config(given: dict[str, Any], own: dict[str, Any]) -> GQAConfig | None:
    """--layer gqa: the options GroupQueryAttention shares with MultiHeadAttention, and its own."""
    fields = {name: given.pop(name) for name in _LAYER_FIELDS}
    given.pop("axes")
    if fields["query_shape"] is None:  # only when shape_optional
        return None
    if fields["keras"] == ALL_KERAS:
        raise BadValue(
            ConfigError(
                "--keras", ALL_KERAS, "--layer gqa: Keras 2 has no GroupQueryAttention; use --keras 3"
            )
        )
    shared = {name: value for name, value in fields.items() if name in GQAConfig.__dataclass_fields__}
    return GQAConfig(**shared, **own)


# --- How output looks -------------------------------------------------------------------

COLORS = ("auto", "always", "never")
_SCREEN = [
    inspect.Parameter(
        "width",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            int | None,
            typer.Option(
                "--width",
                metavar="COLUMNS",
                parser=converter(lambda o, t: parse_int(o, t, minimum=40), "--width"),
                help=f"Lay the tables out for this many columns [default: the terminal's; piped: "
                f"COLUMNS, else {PIPED_WIDTH}].",
                show_default=False,
                rich_help_panel=OUTPUT,
            ),
        ],
    ),
    inspect.Parameter(
        "color",
        inspect.Parameter.KEYWORD_ONLY,
        default="auto",
        annotation=Annotated[
            str,
            typer.Option(
                "--color",
                metavar="|".join(COLORS),
                parser=_choose("--color", COLORS),
                autocompletion=_complete(COLORS),
                help="Colour: auto (on a terminal, unless NO_COLOR), always (e.g. for less -R), never.",
                rich_help_panel=OUTPUT,
            ),
        ],
    ),
]


@dataclass(frozen=True)
class Screen:
    """Where the tables go and how: --width and --color."""

    width: int | None = None
    color: str = "auto"

    def console(self) -> Any:
        """The console for tables on stdout (a rich Console, built by the output layer)."""
        from mha_cli.output.tables import make_console

        return make_console(width=self.width, color=self.color)

    def answer(
        self, json_output: bool, document: Callable[[], dict[str, Any]], tables: Callable[[Any], None]
    ) -> None:
        """Print a result as its JSON document (--json) or as its tables on this screen."""
        if json_output:
            from mha_cli.output.documents import dumps

            typer.echo(dumps(document()))
        else:
            tables(self.console())


#: What a command's ``screen`` parameter says before screen_options replaces it.
DEFAULT_SCREEN = Screen()


def screen_options(command: F) -> F:
    """Give the decorated command --width and --color; it receives them as ``screen: Screen``."""
    return _replace_parameter(
        command, "screen", _SCREEN, lambda given: Screen(given.pop("width"), given.pop("color"))
    )
