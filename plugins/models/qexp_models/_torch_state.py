"""What every PyTorch model of the zoo does the same way around its network, whatever its training loop.

:class:`TorchStateMixin` is shared by :class:`~.torch_loop.TorchModel` (the zoo's loop) and :class:`~.alstm.ALSTM`
(which keeps its own fast loop): pickling with the weights as CPU numpy arrays (so a GPU-trained model loads
anywhere; the state keys stay ``net`` = None and ``net_state``), the ``GPU`` device choice, the scoring batch
per device, and rebuilding the network from ``net_state`` after unpickling.

This module imports no torch: the methods take the torch module as an argument.
"""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from ._data import not_fitted


class TorchStateMixin:
    """Pickling, device and fitted-network handling of a model holding a torch ``net``.

    The model sets ``GPU``, ``net``, ``net_state`` and ``eval_batch_size`` in its constructor and implements
    ``_new_net``; ``name`` (the class name unless overridden) names the model in messages.
    """

    GPU: Any
    net: Any
    net_state: dict[str, np.ndarray] | None
    eval_batch_size: int | None

    cpu_eval_batch: ClassVar[int] = 1024  # rows per scoring pass on a CPU (activations stay in cache)
    gpu_eval_batch: ClassVar[int] = 16384  # on a GPU: large, few kernel launches
    gpu_warn_once: ClassVar[bool] = False  # warn about a missing GPU only once per model (fit and predict)
    gpu_warn_stacklevel: ClassVar[int] = 4  # the frame the missing-GPU warning names

    @property
    def name(self) -> str:
        return type(self).__name__

    def _new_net(self) -> Any:
        """A fresh network (torch module) whose forward maps a batch of inputs to ``[B]`` scores."""
        raise NotImplementedError

    # ---- pickling: the weights travel as CPU numpy arrays --------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        net = state.pop("net", None)
        if net is not None:
            state["net_state"] = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        state["net"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # ---- device ------------------------------------------------------------------------------
    def _device(self, torch: Any) -> Any:
        """CUDA device ``GPU`` when present, else the CPU; a warning when a GPU was asked for explicitly.

        ``GPU`` is a CUDA device index (``-1`` = the CPU; ``None`` = device 0 when CUDA is present, silently
        the CPU otherwise) or a torch device string (``"cuda:1"``, ``"cpu"``); a string of digits is an index.
        """
        gpu = self.GPU
        if isinstance(gpu, str) and not gpu.lstrip("-").isdigit():
            dev = torch.device(gpu)
            if dev.type != "cuda" or torch.cuda.is_available():
                return dev
            want = dev.index or 0
        else:
            want = 0 if gpu is None else int(gpu)
        if want < 0:
            return torch.device("cpu")
        if torch.cuda.is_available() and want < torch.cuda.device_count():
            return torch.device("cuda", want)
        if gpu is not None and not (self.gpu_warn_once and self.__dict__.get("_gpu_warned")):
            if self.gpu_warn_once:
                self._gpu_warned = True
            why = ("CUDA is not available" if not torch.cuda.is_available()
                   else f"only {torch.cuda.device_count()} CUDA device(s) exist")
            warnings.warn(f"{self.name}: GPU={gpu} was requested but {why}; using the CPU (set GPU: -1 to "
                          f"choose the CPU without this warning)", stacklevel=self.gpu_warn_stacklevel)
        return torch.device("cpu")

    def _eval_batch(self, device: Any) -> int:
        """Rows per forward pass when scoring: ``eval_batch_size`` when set, else per device."""
        if self.eval_batch_size is not None:
            return int(self.eval_batch_size)
        return self.gpu_eval_batch if device.type == "cuda" else self.cpu_eval_batch

    def _net_on(self, torch: Any, device: Any) -> Any:
        """The fitted network on ``device`` (rebuilt from ``net_state`` after unpickling)."""
        if self.net is None:
            if self.net_state is None:
                raise not_fitted(self.name)
            net = self._new_net()
            net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.net_state.items()})
            self.net = net
        self.net = self.net.to(device)
        return self.net
