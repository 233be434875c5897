// out = y ⊙ scale + bias (scale and bias per output feature, the last dim),
// as one autograd node that saves its output instead of y: the training form of
// D2-LoRA and DoRA then keeps no more activations than LoRA does. Backward
// recovers y ⊙ scale = out - bias (and y where scale != 0).
#pragma once

#include <ATen/Tensor.h>

namespace d2lora::engine {

// `y` [..., out] in the compute dtype; `scale` [out] (any float dtype, cast to
// y's); `bias` [out] or undefined.
at::Tensor ScaleRowsAddBias(const at::Tensor& y, const at::Tensor& scale, const at::Tensor& bias);

}  // namespace d2lora::engine
