"""Session 27 (prepared for the next), run 207: what the add+LayerNorm backward kernels cost the
graphed step at the power cap (NOTES Next GPU run 24; run 204 measured the forward's): the tree
against the same step with every AddLayerNormFunction backward run twice (the first call's
gradients dropped: values and every other kernel as in the tree), both with the column sums in
place (FASTGPT_DEFER_SUMS=0: a deferred sum of the dropped call would write no parameter's
gradient), through benchmarks/ab_step (sustained rounds alternating, an A/A control).

    ROUNDS=2 SUSTAIN_S=16 python .run207-ab.py  (from benchmarks/)
"""
import os
import sys
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ab_step import Variant, compare  # noqa: E402
from fastgpt.ops.layernorm import AddLayerNormFunction  # noqa: E402

TREE_BACKWARD = AddLayerNormFunction.backward


def backward_twice(ctx, *grads):
    TREE_BACKWARD(ctx, *grads)                  # its kernels run in the graph, its gradients dropped
    return TREE_BACKWARD(ctx, *grads)


@mock.patch.dict(os.environ, {"FASTGPT_DEFER_SUMS": "0"})
def main():
    twice = lambda: mock.patch.object(AddLayerNormFunction, "backward", staticmethod(backward_twice))  # noqa: E731
    compare([Variant("tree"), Variant("ln-bwd-twice", twice)],
            rounds=int(os.environ.get("ROUNDS", "2")), seconds=float(os.environ.get("SUSTAIN_S", "16")))


if __name__ == "__main__":
    main()
