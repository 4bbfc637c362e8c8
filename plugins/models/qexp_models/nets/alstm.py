"""Qlib's ``ALSTMModel`` network for ``pt_model_uri`` (``pytorch_alstm`` / ``pytorch_alstm_ts``): the ALSTM
model's network (:mod:`..alstm_net`), which also takes a ``DatasetH``'s flat rows ``[B, d_feat * T]`` as
Qlib's ``pytorch_alstm.ALSTMModel`` does (GeneralPTNN hands a network rows as they come)."""
from __future__ import annotations

import torch

from ..alstm_net import ALSTMNet, flat_to_steps


class ALSTMModel(ALSTMNet):
    """``forward(x: [B, T, d_feat] or [B, d_feat * T]) -> [B]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(flat_to_steps(x, self.d_feat) if x.dim() == 2 else x)
