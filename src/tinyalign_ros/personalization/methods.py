# Copyright 2026 The tinyalign_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Which part of the projector a personalization run trains (``PersonalizeConfig.method``).

'projector' trains every weight (nothing here is needed), 'lora' wraps the linear
layers in peft LoRA adapters and folds them back in afterwards (the stored adapter is a plain
projector), 'input' trains only the first block that reads the encoder's frames, 'norms' only the
biases and norms, and 'speaker' one affine transform of the encoder's frames, folded into the first
layer afterwards.
"""

from __future__ import annotations

import torch

from .config import PersonalizeError
from ..projector import Projector


def add_lora(projector: Projector, rank: int) -> None:
    """
    Wrap the projector's linear layers in peft LoRA adapters; everything else is frozen.

    Attention projections inside ``nn.MultiheadAttention`` are left out: the module uses their
    weights directly, so a wrapper there would never run.
    """
    from peft import LoraConfig, inject_adapter_in_model

    names = [n for n, m in projector.named_modules() if isinstance(m, torch.nn.Linear) and 'self_attn' not in n]
    if not names:
        raise PersonalizeError(f'projector {projector.config.type} has no linear layers for LoRA')
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=names, lora_dropout=0.0),
                            projector)


def merge_lora(projector: Projector) -> Projector:
    """
    Fold the LoRA updates into the base weights and remove the wrappers.

    The adapter is then a plain projector (loaders never need peft).
    """
    from peft.tuners.lora import LoraLayer

    for name, module in list(projector.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            _swap(projector, name, module.get_base_layer())
    for parameter in projector.parameters():
        parameter.requires_grad_(True)
    return projector


def prepare(projector: Projector, method: str, lora_rank: int) -> None:
    """Make only what ``method`` trains trainable (wrapping layers where it adds its own weights)."""
    if method == 'lora':
        add_lora(projector, lora_rank)
    elif method == 'input':
        train_input_layers_only(projector)
    elif method == 'norms':
        train_norms_and_biases_only(projector)
    elif method == 'speaker':
        add_speaker_transform(projector)


def finish(projector: Projector, method: str) -> Projector:
    """Fold what :func:`prepare` added back into plain layers and make every weight trainable again."""
    if method == 'lora':
        merge_lora(projector)
    elif method == 'speaker':
        merge_speaker_transform(projector)
    for parameter in projector.parameters():
        parameter.requires_grad_(True)
    return projector


def check_method(projector: Projector, method: str) -> None:
    """
    Raise :class:`PersonalizeError` when ``method`` cannot train this projector; change nothing.

    A run calls this before its slow phases, without copying the projector (a copy would also copy
    the bound head table, tens of MB).
    """
    if method == 'speaker':
        _frame_readers(projector)
    elif method in ('lora', 'input') and not any(isinstance(m, torch.nn.Linear) for m in projector.modules()):
        raise PersonalizeError(f'projector {projector.config.type} has no linear layers to adapt')


def _swap(projector: Projector, name: str, module: torch.nn.Module) -> None:
    """Put ``module`` where the submodule called ``name`` (dotted path) is."""
    parent_name, _, child = name.rpartition('.')
    setattr(projector.get_submodule(parent_name) if parent_name else projector, child, module)


def train_input_layers_only(projector: Projector) -> list[str]:
    """
    Freeze everything but the first block of layers that holds a linear layer.

    That block is the one that reads the encoder's frames, whatever the projector's design; returns
    the trainable parameter names.

    A voice differs from the training voices in the acoustics the encoder reports, so adapting the
    input side alone is the smallest change that can follow it, and forgets the least.
    """
    first = next((name for name, child in projector.named_children()
                  if any(isinstance(m, torch.nn.Linear) for m in child.modules())), None)
    if first is None:
        raise PersonalizeError(f'projector {projector.config.type} has no linear layers to adapt')
    names = []
    for name, parameter in projector.named_parameters():
        keep = name.startswith(first + '.')
        parameter.requires_grad_(keep)
        if keep:
            names.append(name)
    return names


def train_norms_and_biases_only(projector: Projector) -> list[str]:
    """
    Freeze every weight matrix; train the biases, the layer norms' gains and the head's temperature.

    A few thousand numbers that shift and rescale what each layer passes on: the classic speaker
    adaptation of a trained network (gains and offsets per unit) with too few parameters to memorize
    the operator's sentences. Returns the trainable parameter names.
    """
    names = []
    for name, parameter in projector.named_parameters():
        keep = parameter.dim() < 2  # biases, LayerNorm weight and bias, logit_scale
        parameter.requires_grad_(keep)
        if keep:
            names.append(name)
    if not names:
        raise PersonalizeError(f'projector {projector.config.type} has no biases or norms to adapt')
    return names


class SpeakerTransform(torch.nn.Module):
    """
    An affine map of every encoder frame, run in front of a linear layer that reads stacked frames.

    One square matrix of the frame's width (384 for Whisper tiny) and an offset, shared by every
    frame of the stack and every position: a voice differs from the training voices in how the
    encoder reports its sounds, everywhere in the same way, so a transform of the features can
    follow a voice with far too few degrees of freedom to memorize the operator's sentences
    position by position (the shipped ConcatMLP's first layer has about 20 times as many). It
    starts as the identity, so training starts from the base adapter's output.
    """

    def __init__(self, base: torch.nn.Linear, frame_dim: int) -> None:
        super().__init__()
        if base.in_features % frame_dim:
            raise PersonalizeError(f'a layer reading {base.in_features} numbers does not read {frame_dim}-wide frames')
        self.base = base
        self.stack = base.in_features // frame_dim
        self.weight = torch.nn.Parameter(torch.eye(frame_dim, dtype=base.weight.dtype, device=base.weight.device))
        self.bias = torch.nn.Parameter(torch.zeros(frame_dim, dtype=base.weight.dtype, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.reshape(*x.shape[:-1], self.stack, -1)
        return self.base((frames @ self.weight.T + self.bias).reshape(x.shape))

    def merged(self) -> torch.nn.Linear:
        """Return the base layer with the transform folded into its weights: the same function, one layer."""
        with torch.no_grad():
            w = self.base.weight.view(self.base.out_features, self.stack, -1)
            layer = torch.nn.Linear(self.base.in_features, self.base.out_features, bias=True,
                                    device=w.device, dtype=w.dtype)
            layer.weight.copy_(torch.einsum('oke,ed->okd', w, self.weight).reshape_as(self.base.weight))
            bias = self.base.bias if self.base.bias is not None else torch.zeros_like(layer.bias)
            layer.bias.copy_(bias + torch.einsum('oke,e->o', w, self.bias))
        return layer


def _frame_readers(projector: Projector) -> list[str]:
    """Names of the linear layers that read the stacked encoder frames directly (nothing in between)."""
    readers = {'concat_mlp': ['mlp.0'], 'linear': ['out', 'blank']}.get(projector.config.type)
    if readers is None:
        raise PersonalizeError(f'the speaker transform needs a projector whose first layer is linear on the '
                               f'encoder frames; {projector.config.type} normalizes them first')
    return readers


def add_speaker_transform(projector: Projector) -> list[str]:
    """
    Freeze the projector and put one trainable :class:`SpeakerTransform` in front of it.

    A projector whose stack is read by several layers (the linear design's output and blank rows)
    gets one wrapper per layer, all sharing one matrix and offset. Returns the trainable parameter names.
    """
    readers = _frame_readers(projector)
    for parameter in projector.parameters():
        parameter.requires_grad_(False)
    shared: SpeakerTransform | None = None
    for name in readers:
        transform = SpeakerTransform(projector.get_submodule(name), projector.config.encoder_dim)
        if shared is None:
            shared = transform
        else:
            transform.weight, transform.bias = shared.weight, shared.bias
        _swap(projector, name, transform)
    return [name for name, parameter in projector.named_parameters() if parameter.requires_grad]


def merge_speaker_transform(projector: Projector) -> Projector:
    """Fold every :class:`SpeakerTransform` into the layer it wraps; the adapter is a plain projector again."""
    for name, module in list(projector.named_modules()):
        if isinstance(module, SpeakerTransform):
            _swap(projector, name, module.merged())
    for parameter in projector.parameters():
        parameter.requires_grad_(True)
    return projector
