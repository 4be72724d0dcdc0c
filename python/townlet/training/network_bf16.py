"""The conflict-aware network's bfloat16 layers (`ppo.precision: bf16`, training/network.py).

`ConvAsRows` computes the map encoder's convolution as one matrix product per output row of the map;
`linear_relu` is a bfloat16 layer, relu(x @ weight^T + bias), with oneDNN's fused product forward and
a backward whose masking and bias sums are one pass of the core (`_core.relu_backward`);
`HiddenHeads` is the actor's and critic's hidden layers as one such layer, then the float32 heads (the core's
`heads_forward` and `heads_backward`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from townlet import _core


def _fused_linear_relu() -> Any:
    """oneDNN's product with its bias and ReLU applied as it writes the output (inductor's CPU
    kernel), where this torch has it; None elsewhere."""
    try:
        available = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        return torch.ops.mkldnn._linear_pointwise if available else None
    except (AttributeError, RuntimeError):
        return None


_FUSED_LINEAR_RELU = _fused_linear_relu()


def linear_relu_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(x @ weight^T + bias), no gradient: one oneDNN pass where torch has the fused kernel (about
    1.7x relu(addmm) at the learner's bfloat16 shapes: addmm first copies the bias into the output,
    relu is another pass), the same bits as relu(addmm) (tests/test_train_precision.py)."""
    if _FUSED_LINEAR_RELU is not None:
        out: torch.Tensor = _FUSED_LINEAR_RELU(x, weight, bias, "relu", [], "")
        return out
    return torch.relu(torch.addmm(bias, x, weight.t()))


def bits(t: torch.Tensor) -> np.ndarray[Any, np.dtype[np.uint16]]:
    """A contiguous bfloat16 tensor's memory as uint16 bits (numpy, shared)."""
    return t.view(torch.int16).numpy().view(np.uint16)


def relu_grad(grad: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient through a bfloat16 ReLU layer whose output was `out` (B, N), and its column sums
    (the bias's gradient, summed in float32): one pass of the core's `relu_backward`."""
    if out.dtype != torch.bfloat16 or grad.dtype != torch.bfloat16:
        raise TypeError(f"relu_grad reads bfloat16 words, got {grad.dtype} and {out.dtype}")
    masked, sums = torch.empty_like(out), torch.empty(out.shape[1])
    _core.relu_backward(bits(grad.contiguous()), bits(out), bits(masked), sums.numpy())
    return masked, sums.to(out.dtype)


class _LinearRelu(torch.autograd.Function):
    """relu(x @ weight^T + bias) in bfloat16 (`linear_relu_forward`) with a backward of three passes:
    the core's masked gradient and bias sums (`relu_grad`, where autograd runs threshold_backward and
    a sum), the weight's product and, when `x` needs one, x's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = linear_relu_forward(x, weight, bias)
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        x, weight, out = ctx.saved_tensors
        g, g_bias = relu_grad(grad, out)
        return (g.mm(weight) if ctx.needs_input_grad[0] else None), g.t().mm(x), g_bias


def linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A bfloat16 layer, relu(x @ weight^T + bias): `_LinearRelu` where gradients are recorded, else
    its forward alone."""
    if not torch.is_grad_enabled():
        return linear_relu_forward(x, weight, bias)
    out: torch.Tensor = _LinearRelu.apply(x, weight, bias)
    return out


def _f32(t: torch.Tensor) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A float32 tensor's values as a C-ordered numpy array (shared where it is contiguous)."""
    return t.detach().contiguous().numpy()


class HiddenHeads(torch.autograd.Function):
    """The actor's and critic's hidden layers as one bfloat16 layer, h = relu(z @ hidden^T + b) (B,
    2 * half), then the float32 heads, logits = h[:, :half] @ policy^T + b and value = h[:, half:] @
    value^T + b, both computed by the core in one pass over `h` (`_core.heads_forward`), where torch
    converted `h` to float32 and ran two small products. Its backward is the core's too
    (`_core.heads_backward`): the hidden layer's masked bfloat16 gradient, its bias sums and the heads'
    weight gradients in one pass, where autograd ran four small products, a join, a rounding and the
    mask; then the hidden layer's two bfloat16 products."""

    @staticmethod
    def outputs(
        z: torch.Tensor,
        hidden: torch.Tensor,
        hidden_bias: torch.Tensor,
        policy: torch.Tensor,
        policy_bias: torch.Tensor,
        value: torch.Tensor,
        value_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, values, h)."""
        h = linear_relu_forward(z, hidden, hidden_bias)
        logits, values = torch.empty(h.shape[0], policy.shape[0]), torch.empty(h.shape[0])
        _core.heads_forward(
            bits(h), _f32(policy), _f32(policy_bias), _f32(value), _f32(value_bias), logits.numpy(), values.numpy()
        )
        return logits, values, h

    @staticmethod
    def forward(ctx: Any, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, values, h = HiddenHeads.outputs(*args)
        z, hidden, _, policy, _, value, _ = args
        ctx.save_for_backward(z, hidden, h, policy, value)
        return logits, values

    @staticmethod
    def backward(ctx: Any, g_logits: torch.Tensor, g_values: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, hidden, h, policy, value = ctx.saved_tensors
        g, sums = torch.empty_like(h), torch.empty(h.shape[1])
        g_policy, g_policy_bias = torch.empty_like(policy), torch.empty(policy.shape[0])
        g_value, g_value_bias = torch.empty_like(value), torch.empty(1)
        _core.heads_backward(
            _f32(g_logits), _f32(g_values), bits(h), _f32(policy), _f32(value), bits(g), sums.numpy(),
            g_policy.numpy(), g_policy_bias.numpy(), g_value.numpy(), g_value_bias.numpy(),
        )  # fmt: skip
        g_z = g.mm(hidden) if ctx.needs_input_grad[0] else None
        return g_z, g.t().mm(z), sums.to(h.dtype), g_policy, g_policy_bias, g_value, g_value_bias


class ConvAsRows:
    """A `Conv2d(C, K, 3, stride 2, padding 1)` over a (C, H, W) map as one matrix product per
    output row: output row i reads input rows 2i-1..2i+1 (a "slab" of C x 3 x W values, zero
    outside the map) and maps it through a linear layer's (W_out*K, C*3*W) weight built from the
    kernel (the same for every row: a convolution is shift-invariant). More multiply-adds than the
    convolution, but one dense, wide product instead of a narrow one, and its backward is a
    product too (the convolution's weight gradient was the update's slowest kernel). The output
    comes in (row, column, channel) order; `permuted_fc` reorders the next layer's columns to
    match the convolution's (channel, row, column) flattening. The slabs themselves are written by
    the core (`_core.slab_rows`, from `ConflictAwarePolicy.prepare`)."""

    def __init__(self, map_shape: tuple[int, int, int], conv: nn.Conv2d) -> None:
        c, h, w = map_shape
        if conv.kernel_size != (3, 3) or conv.stride != (2, 2) or conv.padding != (1, 1):
            raise ValueError("ConvAsRows covers a 3x3 convolution with stride 2 and padding 1")
        self.out_channels = conv.out_channels
        self.out_rows, self.out_cols = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.slab_width = c * 3 * w
        self.slab_len = self.out_rows * self.slab_width
        self.map_shape = map_shape
        zero_weight = conv.weight.numel()  # the index of a zero appended to the flattened kernel
        toeplitz = [
            k * c * 9 + ch * 9 + r * 3 + (j + 1 - 2 * oc) if 0 <= j + 1 - 2 * oc <= 2 else zero_weight
            for oc in range(self.out_cols)
            for k in range(self.out_channels)
            for ch in range(c)
            for r in range(3)
            for j in range(w)
        ]
        self.toeplitz_index = torch.tensor(toeplitz, dtype=torch.long)

    def weight(self, kernel: torch.Tensor) -> torch.Tensor:
        """The (out_cols * out_channels, slab_width) weight of the kernel `kernel`, as a linear layer's:
        slab @ weight^T is the output row in (column, channel) order (add the bias repeated per
        column)."""
        flat = torch.cat([kernel.reshape(-1), kernel.new_zeros(1)])
        return flat.index_select(0, self.toeplitz_index).view(-1, self.slab_width)

    def permuted_fc(self, weight: torch.Tensor) -> torch.Tensor:
        """The next layer's (out, K*rows*cols) weight with its columns in (row, column, channel) order."""
        out = weight.shape[0]
        return weight.view(out, self.out_channels, self.out_rows, self.out_cols).permute(0, 2, 3, 1).reshape(out, -1)
