"""Losses a model holds outside `compile(loss=...)`.

A Model subclass may keep its own loss functions and apply them in an
overridden `compute_loss` (keras.io's knowledge distillation:
`compile(student_loss_fn=..., distillation_loss_fn=...)`, `model.loss`
None). Keras still calls `compute_loss(x, y, y_pred, sample_weight)` in the
train step, so lossguard sees the batch; what it lacks is the loss that
reads `y` and `y_pred`. `held_losses` finds it by reading the override's
source: a call `self.<attribute>(y, y_pred)` on the method's own `y` and
`y_pred` arguments. The loss found is then known (by name or by probing)
like a compiled one, so the label and prediction checks run on it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import textwrap

import keras

logger = logging.getLogger("lossguard")


@dataclasses.dataclass(frozen=True)
class HeldLoss:
    """A loss a model applies to `(y, y_pred)` in its own `compute_loss`."""

    attribute: str
    loss: object
    owner: str  # the class whose compute_loss calls it

    @property
    def how(self) -> str:
        return f"held by {self.owner}.compute_loss as self.{self.attribute}"


def overrides_compute_loss(model) -> bool:
    """Whether the model's class (not Keras) defines `compute_loss`."""
    method = getattr(type(model), "compute_loss", None)
    module = getattr(method, "__module__", "") or ""
    return method is not None and not module.startswith("keras")


def held_losses(model) -> list[HeldLoss]:
    """The losses an overridden `compute_loss` applies to its `y, y_pred`.

    Returns an empty list where `compute_loss` is Keras' own, where its
    source cannot be read, or where it calls no attribute of the model on
    exactly its `y` and `y_pred` arguments.
    """
    if not overrides_compute_loss(model):
        return []
    method = type(model).compute_loss
    # The class that defines it (its qualname may start with a function's
    # name: "make.<locals>.Distiller.compute_loss").
    owner = method.__qualname__.rsplit(".", 2)[-2]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    except (OSError, TypeError, SyntaxError) as error:
        logger.info("lossguard cannot read %s.compute_loss: %s", owner, error)
        return []
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    params = [a.arg for a in function.args.args]
    if len(params) < 4:
        return []
    self_name, y_name, pred_name = params[0], params[2], params[3]
    found = []
    for node in ast.walk(function):
        attribute = _applied_to(node, self_name, y_name, pred_name)
        if attribute is None or any(h.attribute == attribute for h in found):
            continue
        loss = getattr(model, attribute, None)
        if callable(loss) and not isinstance(loss, keras.Model):
            found.append(HeldLoss(attribute, loss, owner))
    return found


def _applied_to(node, self_name, y_name, pred_name) -> str | None:
    """`attr` for a call `self.attr(y, y_pred, ...)` (by position or name)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == self_name
    ):
        return None
    args = [a.id if isinstance(a, ast.Name) else None for a in node.args[:2]]
    keywords = {
        k.arg: k.value.id for k in node.keywords if isinstance(k.value, ast.Name)
    }
    y = args[0] if args else keywords.get("y_true")
    pred = args[1] if len(args) > 1 else keywords.get("y_pred")
    if (y, pred) == (y_name, pred_name):
        return node.func.attr
    return None
