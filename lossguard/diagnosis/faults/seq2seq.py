"""Sequence-to-sequence faults: teacher forcing and padding.

Both read statistics the train step measures on the exact batch (so they run
in `fit` as in `diagnose`): `decoder_copy_share`, the share of real target
positions whose input token at the same position is the target itself, and
`pad_share`, the share of the positions the loss counts whose target is the
padding id 0.
"""

from __future__ import annotations

from lossguard.diagnosis.faults.format import of_output, pct
from lossguard.diagnosis.registry import fault

#: Share of the counted target positions that are padding and count as "most".
PADDING_SHARE = 0.5
#: Share of real positions where an input == the target that means "not shifted".
COPY_SHARE = 0.5
#: Positions a batch must count before its copy share means anything: on a
#: batch of one short sentence a reversal task's encoder input equals the
#: target at the middle positions by chance (three of four when a = d).
COPY_MIN_POSITIONS = 16
#: The padding id the checks assume (Keras' mask_zero and TextVectorization).
PAD_ID = 0

DECODER_TARGET_NOT_SHIFTED = fault(
    "DECODER_TARGET_NOT_SHIFTED",
    "error",
    "Decoder input not shifted",
    "The decoder is fed the target at the same step: it learns to copy.",
)
PADDING_NOT_MASKED = fault(
    "PADDING_NOT_MASKED",
    "warning",
    "Padding not masked",
    "Most counted target positions are padding: the loss measures padding.",
)


@DECODER_TARGET_NOT_SHIFTED.check(
    "output",
    when=lambda ctx: (
        (ctx.stats["decoder_copy_share"] > COPY_SHARE)
        & (ctx.stats["active_rows"] >= COPY_MIN_POSITIONS)
    ),
)
def decoder_target_not_shifted(ctx):
    share = ctx.stats["decoder_copy_share"]
    i = int(ctx.stats["decoder_copy_input"])
    return DECODER_TARGET_NOT_SHIFTED.finding(
        f"Input {i} equals the target{of_output(ctx.spec, ctx.single)} at the same "
        f"position for {pct(share)} of the non-padding positions.",
        "With teacher forcing the decoder must see the target up to step t-1 to "
        "predict step t. Fed the target at step t itself, it only has to copy its "
        "input, so the loss collapses towards 0 in training and the model cannot "
        "generate anything.",
        "Feed [start] + target[:-1] as the decoder input "
        "(decoder_input[:, 1:] = target[:, :-1]).",
        {"output": ctx.spec.name, "input": i, "copy_share": share},
    )


@PADDING_NOT_MASKED.check(
    "output", when=lambda ctx: ctx.stats["pad_share"] > PADDING_SHARE
)
def padding_not_masked(ctx):
    share = ctx.stats["pad_share"]
    return PADDING_NOT_MASKED.finding(
        f"{pct(share)} of the target positions{of_output(ctx.spec, ctx.single)} "
        "the loss "
        f"counts are the padding id {PAD_ID}, and nothing masks them.",
        "The loss is averaged over every position it counts; padding is "
        "trivially easy to predict, so it dominates the mean: the loss and "
        "accuracy mostly measure how well the model predicts padding.",
        "Embedding(mask_zero=True) on the decoder input, ignore_class=0 in a "
        "sparse cross-entropy, or sample weights of 0 on padding.",
        {
            "output": ctx.spec.name,
            "pad_id": PAD_ID,
            "pad_share": share,
            "mask": bool(ctx.stats["masked"]),
            "ignore_class": ctx.spec.ignore_class,
            "sample_weight": bool(ctx.stats["weighted"]),
        },
    )
