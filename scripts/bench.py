"""Benchmark mha-explain against plain Keras, side by side in one run: ``python scripts/bench.py``.

Every command runs in a fresh process, interleaved round by round, so machine
noise falls on all of them alike; the report gives medians and, above all,
ratios. Measured:

- the Python floor (``python -c pass``) and ``mha-explain --help``;
- three clocks for each: wall, CPU, and the time to the answer (without the
  process's exit, which for a script includes TensorFlow's ~1 s of teardown);
- ``--no-run`` and a full explain against a minimal hand-written tf.keras
  script that runs the same single forward pass, for the forum's sentence case
  and for a 48x48 image (where the NumPy re-execution costs the most);
- ``mha-explain scan --build`` of a 4-layer KerasHub Llama (hidden 256, 128 tokens), whose
  attention it does not explain and re-executes, against building it and running one forward pass.
- ``mha-explain scan`` of a saved 12-layer Transformer encoder (hidden 256,
  4 heads, sequence 128) against a script that loads the same ``.keras`` file
  and runs one ``model.predict``;
- ``mha-explain check`` over 1 and over N generated cases: the marginal cost of
  a case, end to end and, without process noise, in one process after warm-up,
  next to plain Keras building the same layers and running the same passes.
  Two case files: one where cases share layers (as cases of one layer at several
  sizes do; check reuses a built layer), and one where every case has a layer
  of its own (check must build each, as plain Keras does).

- ``explain --jsonl`` over 100 configurations (one process, ``--get``) against
  100 separate ``--get`` invocations, estimated as 100 times the median of one
  (each is a fresh process that pays the backend's import: 100 real ones would
  take minutes a round); and its marginal cost per configuration in one process
  after warm-up, next to plain Keras building each layer and running it.

- ``mha_cli.explain(layer, x)`` in one process (a notebook: Keras imported, the layer built)
  against the layer's own forward pass with scores plus a NumPy re-execution written in the script.

Targets (issues 3, 5, 12, 14 and 26): explain(layer, x) within 1.2x of the pass + NumPy;
--help < 0.3 s; --no-run > 10x faster than the
script; a full explain within 10% of it; a case in check < 25 ms; scanning the
encoder within 1.3x of loading it and predicting once; --jsonl >= 30x faster
than separate runs, and within 1.1x of plain Keras per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mha_cli.core.config import MHAConfig

BIN = Path(sys.executable).parent
CLI = str(BIN / "mha-explain")
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
FORUM = ["--shape", "32,64,4", "--axes", "1", "--num-heads", "2", "--key-dim", "128"]
#: An image with the default axes: 2304 positions, 10.6 million scores a batch item (2 heads).
IMAGE = ["--shape", "48,48,8", "--num-heads", "2", "--key-dim", "16"]
HAND_WRITTEN = """\
import numpy as np
import keras

x = np.random.default_rng(0).standard_normal((2, {shape})).astype("float32")
layer = keras.layers.MultiHeadAttention({arguments})
output, scores = layer(x, x, return_attention_scores=True)
print(output.shape, scores.shape)
"""
#: GroupQueryAttention, Llama-style: 8 query heads sharing 2 key/value heads on a 128-token sequence.
GQA = ["--layer", "gqa", "--shape", "128,256", "--num-query-heads", "8", "--num-key-value-heads", "2"]
SCRIPTS = {
    "forum": HAND_WRITTEN.format(
        shape="32, 64, 4", arguments="num_heads=2, key_dim=128, attention_axes=(1,)"
    ),
    "gqa": HAND_WRITTEN.format(
        shape="128, 256", arguments="head_dim=32, num_query_heads=8, num_key_value_heads=2"
    ).replace("MultiHeadAttention", "GroupQueryAttention"),
    "image": HAND_WRITTEN.format(shape="48, 48, 8", arguments="num_heads=2, key_dim=16"),
}


#: Builds and saves the encoder the scan is timed on (run in its own process).
ENCODER = """\
import sys
import keras
from keras import layers

x = inputs = keras.Input(shape=(128, 256), name="embedded")
for block in range(12):
    attended = layers.MultiHeadAttention(num_heads=4, key_dim=64, name=f"attention_{block}")(x, x)
    x = layers.LayerNormalization()(x + attended)
    x = layers.LayerNormalization()(x + layers.Dense(256)(layers.Dense(1024, activation="relu")(x)))
keras.Model(inputs, x, name="encoder").save(sys.argv[1])
"""
#: A 4-layer Llama-style KerasHub backbone (hidden 256, 8 query heads sharing 2 key/value heads),
#: whose LlamaAttention scan does not explain and re-executes (issue 25); the module --build names.
LLAMA = """\
import keras_hub


def build():
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=1000, num_layers=4, num_query_heads=8, num_key_value_heads=2,
        hidden_dim=256, intermediate_dim=512,
    )
"""
#: What a user would write to see it run: build it and run one forward pass on 128 tokens.
LLAMA_FORWARD = """\
import numpy as np
from llama4 import build

tokens = np.random.default_rng(0).integers(1, 1000, size=(2, 128))
model = build()
print(model({"token_ids": tokens, "padding_mask": np.ones_like(tokens)}).shape)
"""
#: What a user would write to run the saved encoder once: load it and predict on a batch of 2.
LOAD_AND_PREDICT = """\
import sys
import numpy as np
import keras

model = keras.saving.load_model(sys.argv[1])
print(model.predict(np.random.default_rng(0).standard_normal((2, 128, 256)), verbose=0).shape)
"""


def case_file(count: int, *, own_layers: bool = False) -> str:
    """``count`` small, distinct cases: ranks 3 and 4, one or all axes, 1-3 heads.

    The cases share a dozen layers (equal constructor arguments, ranks and
    feature sizes), unless ``own_layers`` gives each a key_dim of its own.
    """
    lines = []
    for i in range(count):
        rank4 = i % 2 == 1
        shape = [4 + i % 5, 3 + i % 4, 8] if rank4 else [4 + i % 7, 8 + 8 * (i % 3)]
        axes = "[1]" if rank4 and i % 4 == 1 else '"none"'
        lines += [
            "[[case]]",
            f'name = "case-{i:03d}"',
            f"shape = {shape}",
            f"axes = {axes}",
            f"num_heads = {1 + i % 3}",
            f"key_dim = {2 + i if own_layers else 2 + i % 4}",
            "",
        ]
    return "\n".join(lines)


def jsonl_lines(count: int) -> str:
    """The same configurations as :func:`case_file`, one JSON object per line, for --jsonl."""
    lines = []
    for i in range(count):
        rank4 = i % 2 == 1
        shape = [4 + i % 5, 3 + i % 4, 8] if rank4 else [4 + i % 7, 8 + 8 * (i % 3)]
        axes: object = [1] if rank4 and i % 4 == 1 else "none"
        entry = {"name": f"config-{i:03d}", "shape": shape, "axes": axes, "num_heads": 1 + i % 3}
        lines.append(json.dumps({**entry, "key_dim": 2 + i % 4}))
    return "\n".join(lines) + "\n"


def timed(command: list[str]) -> tuple[float, float, float]:
    """Wall-clock, CPU (user + system) and to-the-answer seconds of one run of ``command``.

    CPU time is what neighbours on a shared machine disturb least; wall time is
    what a user waits. The answer is the first byte on stdout (every command
    here prints its whole answer at once): a run minus its exit, where
    mha-explain skips the interpreter's teardown and a script does not.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.read(1)
    answered = time.perf_counter() - started
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} exited {process.returncode}:\n{stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, answered


def side_by_side(configs: list[MHAConfig], ours: Callable[[int], object]) -> tuple[int, float, float]:
    """(layers, seconds per configuration in ``ours(i)``, seconds in plain Keras), in this one process.

    Plain Keras builds a new layer for every configuration and runs the same
    forward pass with scores, nothing else: the floor for a tool that builds
    each layer and runs it. ``ours(0)`` runs once first, as warm-up (and the
    backend's import). Interleaved configuration by configuration, taking turns
    at going first: the first pass over new shapes also pays TensorFlow's
    (oneDNN's) set-up for them, ~4 ms here.
    """
    import numpy as np

    from mha_cli.core.mha import derive
    from mha_cli.runtime.keras_adapter import build_signature, load_keras

    keras = load_keras("tensorflow")  # imported quietly, as the CLI does
    derivations = [derive(config) for config in configs]
    layers = len({build_signature(derivation) for derivation in derivations})
    ours(0)
    arguments = [d.layer.keras_kwargs(d.config.attention_axes) for d in derivations]
    inputs = [np.ones((2, *config.query_shape), "float32") for config in configs]

    def mine(number: int) -> float:
        started = time.perf_counter()
        ours(number)
        return time.perf_counter() - started

    def plain(number: int) -> float:
        started = time.perf_counter()
        x = inputs[number]
        keras.layers.MultiHeadAttention(**arguments[number])(x, x, return_attention_scores=True)
        return time.perf_counter() - started

    total_mine = total_plain = 0.0
    for number in range(len(configs)):
        if number % 2:
            total_plain += plain(number)
            total_mine += mine(number)
        else:
            total_mine += mine(number)
            total_plain += plain(number)
    return layers, total_mine / len(configs), total_plain / len(configs)


def in_process(paths: list[Path], count: int) -> list[tuple[int, float, float]]:
    """Per case file: (layers, seconds per case in check's run_case, seconds in plain Keras)."""
    from mha_cli.core.cases import Case, load
    from mha_cli.operations.check import run_case

    found = []
    for path in paths:
        cases = load(path).cases[:count]

        def check(number: int, cases: tuple[Case, ...] = cases) -> None:
            run_case(cases[number], "tensorflow")

        found.append(side_by_side([case.config for case in cases], check))
    return found


def jsonl_in_process(path: Path) -> tuple[int, float, float]:
    """(layers, seconds per configuration through --jsonl's loop, seconds in plain Keras).

    Ours is :func:`mha_cli.operations.many.answer_lines` on one line at a time
    (the whole explain: forward pass, NumPy re-execution, symbolic and plain
    calls) plus the document --jsonl prints.
    """
    from mha_cli.operations.many import answer_lines, config_line
    from mha_cli.output.documents import line_form
    from mha_cli.output.documents.explain import to_document

    lines = path.read_text().splitlines()

    def ours(number: int) -> None:
        for answer in answer_lines([lines[number]], "tensorflow"):
            assert answer.result is not None, answer.problem
            line_form(to_document(answer.result))

    return side_by_side([config_line(line)[1] for line in lines], ours)


def api_in_process(repeats: int) -> list[tuple[str, float, float, float]]:
    """(label, seconds for mha_cli.explain(layer, x), seconds for the layer's own pass + a NumPy check,
    seconds for the user's call without scores, then that pass + check).

    In this one process, Keras already imported and the layer built and called once: what a notebook
    pays per call. The baseline is the layer called with its scores and an einsum re-execution of its
    projections and attention written here in NumPy: the least a tool that verifies the call can do.
    The third figure is the floor for a tool that verifies the user's own call: on Keras 3.15 a call
    without scores takes the fused path, which never computes them, so the scores need a call of
    their own. Medians of ``repeats`` turns, the three taking turns at going first.
    """
    import numpy as np

    import mha_cli
    from mha_cli.runtime.keras_adapter import load_keras

    keras = load_keras("tensorflow")
    cases = {
        "sentence (10, 16), 2 heads": ((10, 16), {"num_heads": 2, "key_dim": 8}),
        "image (32, 64, 4), axes (1,)": (
            (32, 64, 4),
            {"num_heads": 2, "key_dim": 128, "attention_axes": (1,)},
        ),
    }
    found = []
    for label, (shape, arguments) in cases.items():
        layer = keras.layers.MultiHeadAttention(**arguments)
        x = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
        layer(x, x)

        def plain(layer=layer, x=x) -> None:  # type: ignore[no-untyped-def]
            output, _ = layer(x, x, return_attention_scores=True)
            w = {"/".join(v.path.split("/")[-2:]): np.asarray(v.numpy(), "float64") for v in layer.weights}
            q = np.einsum("...d,dhk->...hk", x, w["query/kernel"]) + w["query/bias"]
            k = np.einsum("...d,dhk->...hk", x, w["key/kernel"]) + w["key/bias"]
            v = np.einsum("...d,dhk->...hk", x, w["value/kernel"]) + w["value/bias"]
            rank = x.ndim
            # attention over axis 1, every other position axis free (the default for a sentence)
            logits = np.einsum("b...qhk,b...shk->b...hqs" if rank == 3 else "bqwhk,bswhk->bwhqs", q, k)
            logits = logits / np.sqrt(q.shape[-1])
            weights = np.exp(logits - logits.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            mixed = np.einsum("b...hqs,b...shk->b...qhk" if rank == 3 else "bwhqs,bswhk->bqwhk", weights, v)
            ours = (
                np.einsum("...hk,hkd->...d", mixed, w["attention_output/kernel"]) + w["attention_output/bias"]
            )
            assert np.abs(ours - np.asarray(output)).max() < 1e-3

        def api(layer=layer, x=x) -> None:  # type: ignore[no-untyped-def]
            assert mha_cli.explain(layer, x).failed == ()

        def floor(layer=layer, x=x) -> None:  # type: ignore[no-untyped-def]
            layer(x, x)
            plain()

        api()
        plain()
        floor()
        timings: dict[str, list[float]] = {"api": [], "plain": [], "floor": []}
        runs = [("api", api), ("plain", plain), ("floor", floor)]
        for turn in range(repeats):
            order = runs[turn % 3 :] + runs[: turn % 3]
            for name, run in order:
                started = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - started)
        medians = [statistics.median(timings[name]) for name in ("api", "plain", "floor")]
        found.append((label, *medians))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every command [5]")
    parser.add_argument("--cases", type=int, default=200, help="generated cases for check [200]")
    parser.add_argument("--configs", type=int, default=100, help="generated configurations for --jsonl [100]")
    parser.add_argument(
        "--only",
        metavar="WORDS",
        help="only the commands whose name holds one of these comma-separated words",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        one, shared, own = (folder / f"{name}.mha.toml" for name in ("one", "shared", "own"))
        one.write_text(case_file(1))
        shared.write_text(case_file(args.cases))
        own.write_text(case_file(args.cases, own_layers=True))
        scripts = {name: folder / f"{name}.py" for name in SCRIPTS}
        for name, path in scripts.items():
            path.write_text(SCRIPTS[name])
        recording = [CLI, "record", str(one), str(shared), str(own)]
        subprocess.run(recording, env=ENV, capture_output=True, check=True)
        many, single = folder / "many.jsonl", folder / "one.jsonl"
        many.write_text(jsonl_lines(args.configs))
        single.write_text(jsonl_lines(1))
        encoder = folder / "encoder.keras"
        (folder / "encoder.py").write_text(ENCODER)
        (folder / "predict.py").write_text(LOAD_AND_PREDICT)
        subprocess.run([sys.executable, str(folder / "encoder.py"), str(encoder)], env=ENV, check=True)
        (folder / "llama4.py").write_text(LLAMA)
        (folder / "llama_forward.py").write_text(LLAMA_FORWARD)
        ENV["PYTHONPATH"] = str(folder)  # --build llama4:build and the script import it from there

        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "mha-explain --help": [CLI, "--help"],
            "mha-explain --no-run": [CLI, *FORUM, "--no-run", "--json"],
            "hand-written tf.keras script": [sys.executable, str(scripts["forum"])],
            "mha-explain (full explain)": [CLI, *FORUM, "--json"],
            "hand-written script, 48x48 image": [sys.executable, str(scripts["image"])],
            "mha-explain, 48x48 image": [CLI, *IMAGE, "--json"],
            "hand-written script, GroupQueryAttention": [sys.executable, str(scripts["gqa"])],
            "mha-explain --layer gqa": [CLI, *GQA, "--json"],
            "check, 1 case": [CLI, "check", str(one), "--json"],
            f"check, {args.cases} cases": [CLI, "check", str(shared), "--json"],
            f"check, {args.cases} cases, own layers": [CLI, "check", str(own), "--json"],
            "load + predict, 12-layer encoder": [sys.executable, str(folder / "predict.py"), str(encoder)],
            "mha-explain scan, 12-layer encoder": [CLI, "scan", str(encoder), "--json"],
            "build + forward pass, 4-layer Llama": [sys.executable, str(folder / "llama_forward.py")],
            "mha-explain scan, 4-layer Llama": [
                *(CLI, "scan", "--build", "llama4:build", "--json"),
                *("--input", "token_ids=128", "--input", "padding_mask=128"),
            ],
            "explain --get, one configuration": [CLI, *_first_config(), "--get", "shapes.attention_scores"],
            "explain --jsonl --get, 1 configuration": [CLI, "--jsonl", str(single), "--get", "shapes.output"],
            f"explain --jsonl --get, {args.configs} configurations": [
                CLI,
                "--jsonl",
                str(many),
                "--get",
                "shapes.output",
            ],
        }
        if args.only:
            words = args.only.split(",")
            commands = {name: command for name, command in commands.items() if any(w in name for w in words)}
        wall: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        answer: dict[str, list[float]] = {name: [] for name in commands}
        for round_number in range(args.repeats):
            print(f"round {round_number + 1}/{args.repeats}", file=sys.stderr)
            for name, command in commands.items():
                elapsed, used, answered = timed(command)
                wall[name].append(elapsed)
                cpu[name].append(used)
                answer[name].append(answered)
        in_process_rows = in_process([shared, own], args.cases) if not args.only else []
        api_rows = api_in_process(args.repeats * 4) if not args.only or "api" in args.only else []
        jsonl_row = jsonl_in_process(many) if not args.only or "jsonl" in args.only else None

    print(f"{'command':<40} {'wall median':>11} {'min':>7} {'max':>7} {'cpu median':>11} {'answer':>7}")
    for name in commands:
        values = wall[name]
        print(
            f"{name:<40} {statistics.median(values):>11.3f} {min(values):>7.3f} {max(values):>7.3f} "
            f"{statistics.median(cpu[name]):>11.3f} {statistics.median(answer[name]):>7.3f}"
        )
    print()
    print(f"{'ratios (medians of the same run)':<56} {'wall':>9} {'cpu':>9} {'answer':>9}   target")
    counts = (args.cases, args.configs)
    clocks = zip(ratios(wall, *counts), ratios(cpu, *counts), ratios(answer, *counts), strict=True)
    for (label, wall_value, target), (_, cpu_value, _), (_, answer_value, _) in clocks:
        print(f"{label:<56} {wall_value:>9.2f} {cpu_value:>9.2f} {answer_value:>9.2f}   {target}")
    if jsonl_row is not None:
        layers, mine, plain = jsonl_row
        print()
        print(f"in one process, ms per configuration ({args.configs} configurations over {layers} layers)")
        print(f"{'':<40} {'--jsonl':>9} {'plain Keras':>12} {'ratio':>7}   target")
        figures = f"{mine * 1000:>9.2f} {plain * 1000:>12.2f} {mine / plain:>7.2f}"
        print(f"{'explain, whole document':<40} {figures}   <= 1.1")
    if api_rows:
        print()
        print("in one process (a notebook), ms per call, Keras imported and the layer built")
        heads = f"{'explain':>8} {'pass+NumPy':>11} {'ratio':>6}   target {'+own call':>10} {'ratio':>6}"
        print(f"{'':<36} {heads}")
        for label, mine, plain, floor in api_rows:
            figures = f"{mine * 1000:>8.1f} {plain * 1000:>11.1f} {mine / plain:>6.2f}   <= 1.2 "
            print(f"{label:<36} {figures} {floor * 1000:>10.1f} {mine / floor:>6.2f}")
    if not in_process_rows:
        return
    print()
    print(f"in one process, ms per case ({args.cases} cases)")
    print(f"{'':<40} {'check':>9} {'plain Keras':>12} {'ratio':>7}   target")
    for layers, ours, plain in in_process_rows:
        label = f"{args.cases} cases over {layers} layers"
        print(f"{label:<40} {ours * 1000:>9.2f} {plain * 1000:>12.2f} {ours / plain:>7.2f}   check < 25")


def ratios(times: dict[str, list[float]], cases: int, configs: int) -> list[tuple[str, float, str]]:
    """(label, value, target) from one clock's medians, for the commands that ran (--only)."""
    median = {name: statistics.median(values) for name, values in times.items()}
    found = []
    for label, value, target in _ratios(median, cases, configs):
        try:
            found.append((label, value(), target))
        except KeyError:  # a command --only left out
            continue
    return found


def _ratios(median: dict[str, float], cases: int, configs: int) -> list[tuple[str, Callable[[], float], str]]:
    def script() -> float:
        return median["hand-written tf.keras script"]

    def marginal(name: str) -> float:
        return (median[name] - median["check, 1 case"]) / (cases - 1) * 1000

    def ratio(mine: str, theirs: str) -> Callable[[], float]:
        return lambda: median[mine] / median[theirs]

    def seconds(name: str) -> Callable[[], float]:
        return lambda: median[name]

    return [
        ("--help, seconds", seconds("mha-explain --help"), "< 0.3"),
        ("--help / python -c pass", ratio("mha-explain --help", "python -c pass"), ""),
        ("--no-run, seconds", seconds("mha-explain --no-run"), "< 0.3"),
        (
            "hand-written script / --no-run (speed-up)",
            ratio("hand-written tf.keras script", "mha-explain --no-run"),
            "> 10",
        ),
        (
            "full explain / hand-written script",
            lambda: median["mha-explain (full explain)"] / script(),
            "<= 1.10",
        ),
        (
            "the same, 48x48 image",
            ratio("mha-explain, 48x48 image", "hand-written script, 48x48 image"),
            "<= 1.10",
        ),
        (
            "the same, GroupQueryAttention (--layer gqa)",
            ratio("mha-explain --layer gqa", "hand-written script, GroupQueryAttention"),
            "<= 1.10",
        ),
        ("check: marginal ms per case, end to end", lambda: marginal(f"check, {cases} cases"), "< 25"),
        (
            "check: marginal ms per case, own layers",
            lambda: marginal(f"check, {cases} cases, own layers"),
            "",
        ),
        (
            "scan of a 12-layer encoder / load + predict",
            ratio("mha-explain scan, 12-layer encoder", "load + predict, 12-layer encoder"),
            "<= 1.3",
        ),
        (
            "scan of a 4-layer Llama (verified) / build + forward pass",
            ratio("mha-explain scan, 4-layer Llama", "build + forward pass, 4-layer Llama"),
            "<= 1.3",
        ),
        (
            f"{configs} separate --get runs (est.) / one --jsonl",
            lambda: (
                configs
                * median["explain --get, one configuration"]
                / median[f"explain --jsonl --get, {configs} configurations"]
            ),
            ">= 30",
        ),
        (
            "--jsonl: marginal ms per configuration, end to end",
            lambda: (
                (
                    median[f"explain --jsonl --get, {configs} configurations"]
                    - median["explain --jsonl --get, 1 configuration"]
                )
                / (configs - 1)
                * 1000
            ),
            "",
        ),
    ]


def _first_config() -> list[str]:
    """The first --jsonl configuration as explain's options, for the separate runs."""
    entry = json.loads(jsonl_lines(1))
    return [
        "--shape",
        ",".join(map(str, entry["shape"])),
        "--axes",
        entry["axes"] if isinstance(entry["axes"], str) else ",".join(map(str, entry["axes"])),
        "--num-heads",
        str(entry["num_heads"]),
        "--key-dim",
        str(entry["key_dim"]),
    ]


if __name__ == "__main__":
    main()
