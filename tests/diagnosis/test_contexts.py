"""What a check reads (`lossguard.diagnosis.contexts`): every field and
statistic a registered check or condition reads exists in its stage's
context, and the runners hand each stage the context it declares, with
columns while a condition runs and one batch's scalars while a check
explains it."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lossguard.diagnosis import registry
from lossguard.diagnosis.contexts import (
    BatchContext,
    ConfigContext,
    CrashContext,
    EpochContext,
    ModelContext,
    OutputContext,
    TrendContext,
)
from lossguard.diagnosis.faults import (
    check_batch,
    check_block,
    check_crash,
    check_epoch,
    check_start,
)
from lossguard.diagnosis.registry import STAGES, checks
from lossguard.diagnosis.specs import OutputSpec
from lossguard.diagnosis.statistics import GLOBAL_KEYS, OUTPUT_KEYS

pytestmark = pytest.mark.backends
FAULTS_DIR = Path(registry.__file__).parent / "faults"
CONTEXT = {
    "config": ConfigContext,
    "model": ModelContext,
    "batch": BatchContext,
    "output": OutputContext,
    "unexplained": BatchContext,
    "trend": TrendContext,
    "crash": CrashContext,
    "epoch": EpochContext,
}
#: The statistics each mapping of a context holds.
KEYS = {"stats": set(OUTPUT_KEYS), "batch": set(GLOBAL_KEYS)}


def registered_code():
    """(stage, what, function or lambda node, module) for every check and
    condition registered with `@FAULT.check(stage, ...)` in faults/."""
    for path in sorted(FAULTS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        functions = {
            node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
        }
        for node in functions.values():
            for decorator in node.decorator_list:
                if not (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "check"
                ):
                    continue
                stage = decorator.args[0].value
                yield stage, node.name, node, path.name
                for keyword in decorator.keywords:
                    when = keyword.value
                    if isinstance(when, ast.Name):
                        when = functions[when.id]
                    yield stage, f"when of {node.name}", when, path.name


REGISTERED = list(registered_code())


def reads(node):
    """(field, key or None) for each `ctx.field` and `ctx.field["key"]` or
    `ctx.field.get("key")` in a function or lambda taking `ctx`."""
    (ctx,) = [a.arg for a in node.args.args][:1]
    found = []
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
            if child.value.id == ctx:
                found.append((child.attr, None))
        key = None
        if isinstance(child, ast.Subscript) and isinstance(child.slice, ast.Constant):
            target, key = child.value, child.slice.value
        elif (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Attribute)
            and child.func.attr == "get"
            and child.args
            and isinstance(child.args[0], ast.Constant)
        ):
            target, key = child.func.value, child.args[0].value
        if (
            key is not None
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == ctx
        ):
            found.append((target.attr, key))
    return found


def spec_reads(node):
    """The `ctx.spec.<name>` a function or lambda taking `ctx` reads."""
    (ctx,) = [a.arg for a in node.args.args][:1]
    return {
        child.attr
        for child in ast.walk(node)
        if isinstance(child, ast.Attribute)
        and isinstance(child.value, ast.Attribute)
        and child.value.attr == "spec"
        and isinstance(child.value.value, ast.Name)
        and child.value.value.id == ctx
    }


def test_the_source_scan_sees_every_registered_check():
    scanned = {(stage, name) for stage, name, *_ in REGISTERED}
    registered = {
        (stage, function.__name__)
        for stage in STAGES
        for function, _, _ in checks(stage)
    }
    assert registered <= scanned
    assert len([r for r in REGISTERED if r[1].startswith("when")]) == len(
        [w for stage in STAGES for _, w, _ in checks(stage) if w is not None]
    )


@pytest.mark.parametrize(
    "stage, name, node, module",
    REGISTERED,
    ids=[f"{module}:{name}" for _, name, _, module in REGISTERED],
)
def test_every_field_and_statistic_a_check_reads_is_in_its_context(
    stage, name, node, module
):
    context = CONTEXT[stage]
    fields = {f.name for f in dataclasses.fields(context)}
    read = reads(node)
    assert read, f"{name} reads nothing from its context"
    for field, key in read:
        assert field in fields, (
            f"{name} reads ctx.{field}; {context.__name__} has {fields}"
        )
        if key is not None and field in KEYS:
            assert key in KEYS[field], f"{name} reads ctx.{field}[{key!r}]: no such key"
    spec = OutputSpec(name="out", loss_name="x", kind="categorical")
    for attribute in spec_reads(node):
        assert hasattr(spec, attribute), f"{name} reads ctx.spec.{attribute}"


def test_contexts_are_frozen_and_their_defaults_are_not_shared():
    spec = OutputSpec(name="out", loss_name="x", kind="categorical")
    for context in (
        ConfigContext(spec),
        ModelContext(None),
        BatchContext({}, [], [spec]),
        OutputContext({}, {}, spec),
        CrashContext(ValueError(), [spec]),
        EpochContext("emb", {}, 0.9, 0),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            context.spec = None
    a, b = BatchContext({}, [], []), BatchContext({}, [], [])
    assert a.found == {} and a.found is not b.found
    assert OutputContext({}, {}, spec).single is True
    assert ModelContext("m").vocabulary is ModelContext("m").vectors is None
    assert (
        CrashContext(ValueError(), []).epoch,
        CrashContext(ValueError(), []).step,
    ) == (
        None,
        None,
    )


# ------------------------------------------- what the runners hand the checks
@pytest.fixture
def spy(monkeypatch):
    """Replace the registry's checks by one recording check per stage."""
    seen = {stage: [] for stage in STAGES}
    finding = registry.FAULTS["NEGATIVE_LOSS"].finding("m", "e", "f")

    def entry(stage):
        def check(ctx):
            seen[stage].append(("check", ctx))
            return finding

        def when(ctx):
            seen[stage].append(("when", ctx))
            return np.asarray(ctx_value(ctx)) > 0

        block = stage in registry.BLOCK_STAGES
        return (stage, check, when if block else None, "NEGATIVE_LOSS")

    monkeypatch.setattr(registry, "_ORDER", [entry(stage) for stage in STAGES])
    return seen


def ctx_value(ctx):
    """The value each spy condition holds on: the batch's loss."""
    return ctx.batch["loss"]


def two_output_columns():
    specs = [
        OutputSpec(name="a", loss_name="x", kind="categorical"),
        OutputSpec(name="b", loss_name="x", kind="sparse"),
    ]
    columns = {
        "loss": np.array([1.0, -1.0, 2.0]),
        "aux_loss": np.zeros(3),
        "a/label_min": np.array([0.0, -1.0, 0.0]),
        "b/label_min": np.array([0.0, 0.0, 3.0]),
    }
    return specs, columns


def test_conditions_see_columns_and_checks_see_one_batch(spy):
    specs, columns = two_output_columns()
    found = check_block(columns, specs, known={"INVALID_LABEL_SMOOTHING"})
    assert sorted({i for i, _ in found}) == [0, 2]  # where loss > 0
    whens = {s: [c for what, c in spy[s] if what == "when"] for s in STAGES}
    explained = {s: [c for what, c in spy[s] if what == "check"] for s in STAGES}
    # One condition per stage and output, over the whole block.
    (batch,) = whens["batch"]
    assert isinstance(batch, BatchContext) and batch.specs == specs
    assert batch.batch["loss"].tolist() == [1.0, -1.0, 2.0]
    assert [o["label_min"].tolist() for o in batch.outputs] == [
        [0.0, -1.0, 0.0],
        [0.0, 0.0, 3.0],
    ]
    outputs = whens["output"]
    assert [type(c) for c in outputs] == [OutputContext, OutputContext]
    assert [c.spec.name for c in outputs] == ["a", "b"]
    assert [c.single for c in outputs] == [False, False]
    assert set(outputs[1].stats) == set(OUTPUT_KEYS)
    assert outputs[1].stats["label_min"].tolist() == [0.0, 0.0, 3.0]
    (unexplained,) = whens["unexplained"]
    assert unexplained.found["INVALID_LABEL_SMOOTHING"].tolist() == [True] * 3
    assert unexplained.found["NEGATIVE_LOSS"].tolist() == [True, False, True]
    # Each check explains one batch, with that batch's scalars.
    assert [c.batch["loss"] for c in explained["batch"]] == [1.0, 2.0]
    assert [(c.spec.name, c.stats["label_min"]) for c in explained["output"]] == [
        ("a", 0.0),
        ("b", 0.0),
        ("a", 0.0),
        ("b", 3.0),
    ]
    assert all(type(c.stats["label_min"]) is float for c in explained["output"])
    assert all(c.found == {} for c in explained["unexplained"])


def test_a_single_outputs_context_reads_unprefixed_keys(spy):
    spec = OutputSpec(name="out", loss_name="x", kind="categorical")
    check_batch({"loss": 1.0, "label_min": -2.0}, [spec], epoch=0, step=1)
    (ctx,) = [c for what, c in spy["output"] if what == "check"]
    assert ctx.single is True and ctx.stats["label_min"] == -2.0
    assert np.isnan(ctx.stats["label_max"])  # not measured: NaN, not missing


def test_the_direct_stages_get_their_own_context(spy):
    specs, _ = two_output_columns()
    model, vocabulary, vectors = object(), ["a", "b"], object()
    check_start(model, specs, vocabulary, vectors)
    assert [c.spec.name for _, c in spy["config"]] == ["a", "b"]
    assert all(isinstance(c, ConfigContext) for _, c in spy["config"])
    ((_, ctx),) = spy["model"]
    assert ctx == ModelContext(model, vocabulary, vectors)
    error = ValueError("boom")
    check_crash(error, specs, epoch=1, step=2, phase="validation")
    ((_, ctx),) = spy["crash"]
    assert ctx == CrashContext(error, specs, 1, 2, "validation")
    drift = {"mean_cosine": 0.5}
    check_epoch("emb", drift, 0.9, 3)
    ((_, ctx),) = spy["epoch"]
    assert ctx == EpochContext("emb", drift, 0.9, 3)
