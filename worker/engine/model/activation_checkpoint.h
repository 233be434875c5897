// Activation checkpointing for decoder layers: the forward keeps only the
// layer's input; backward recomputes the layer with gradients enabled and
// differentiates it (like torch.utils.checkpoint with use_reentrant=True, the
// layer's trainable parameters are passed as explicit inputs so their
// gradients flow). The default RNG state of the input's device is saved and
// replayed, so dropout inside adapters draws the same masks in the recompute.
#pragma once

#include <ATen/Tensor.h>

#include <memory>

namespace d2lora::engine {

class DecoderLayerImpl;

// layer->forward(x, cos, sin, allowed) with activations recomputed in backward.
at::Tensor CheckpointedDecoderLayer(const std::shared_ptr<DecoderLayerImpl>& layer, const at::Tensor& x,
                                    const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& allowed);

}  // namespace d2lora::engine
