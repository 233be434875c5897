// out = y ⊙ scale + bias (scale and bias per output feature, the last dim),
// as one autograd node that saves its output instead of y (and nothing of that
// size when `scale` needs no gradient, as with norm_grad: detached). Backward
// recovers y ⊙ scale = out - bias (and y where scale != 0). Against LoRA, the
// training form keeps one extra output-sized tensor only in layers whose output
// nothing downstream saves (q, k, o, down in LLaMA). DoRA's layer uses it, and
// D2-LoRA's under a bf16/fp16 base with wider adapters; D2-LoRA's own form
// (base, low-rank path, scale and residual in one node) is d2lora_epilogue.h.
#pragma once

#include <ATen/Tensor.h>

namespace d2lora::engine {

// `y` [..., out] in the compute dtype; `scale` [out] (any float dtype, cast to
// y's); `bias` [out] or undefined.
at::Tensor ScaleRowsAddBias(const at::Tensor& y, const at::Tensor& scale, const at::Tensor& bias);

}  // namespace d2lora::engine
