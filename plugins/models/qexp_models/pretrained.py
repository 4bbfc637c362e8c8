"""The pretrained base model of GATs/HIST/IGMTF: Qlib's ``model_path`` (a ``torch.save``-d ``state_dict``, or a
pickled qexp model) or ``run:<run id>`` (the ``params.pkl`` a qexp run saved, read through the recorder)."""
from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from qexp.ext import R, RestrictedUnpickler

RUN_PREFIX = "run:"


def describe_missing(model: str, model_path: str) -> str:
    return (f"{model}: model_path {model_path!r} does not exist. It holds the pretrained base model (Qlib's "
            f"configs expect an earlier LSTM/GRU run to have written it): train that first, or point model_path "
            f"at an existing file, or use 'run:<run id>' for a qexp run that saved params.pkl")


def missing_path(model_path: Any) -> bool:
    """True when ``model_path`` names a file that does not exist (a ``run:`` id is checked at fit time)."""
    return (isinstance(model_path, (str, os.PathLike)) and not str(model_path).startswith(RUN_PREFIX)
            and not os.path.exists(os.path.expanduser(str(model_path))))


def load_base_state(model: str, model_path: str) -> dict[str, np.ndarray]:
    """The base model's weights as numpy arrays by ``state_dict`` key; a clear error when they cannot be read."""
    path = str(model_path)
    if path.startswith(RUN_PREFIX):
        run_id = path[len(RUN_PREFIX):].strip()
        try:
            obj = R.get_recorder(recorder_id=run_id).load_object("params.pkl")
        except Exception as exc:  # the store's own error says which part is missing
            raise ValueError(f"{model}: cannot load the base model of run {run_id!r} (model_path {path!r}): "
                             f"{type(exc).__name__}: {exc}") from exc
        return _weights_of(model, obj, path)
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        raise FileNotFoundError(describe_missing(model, path))
    import torch
    try:
        obj = torch.load(full, map_location="cpu", weights_only=True)
    except Exception:  # not a plain state_dict: a pickled qexp model
        # restricted as every pickle a config names: qexp's models and data containers load, code does not
        try:
            with open(full, "rb") as f:
                obj = RestrictedUnpickler(f, allow=["qexp_models.*"]).load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{model}: model_path {path!r} is neither a torch state_dict nor a pickled qexp model "
                             f"({exc}); save the base model with torch.save(net.state_dict(), path) or use "
                             f"model_path: run:<run id>") from None
    return _weights_of(model, obj, path)


def _weights_of(model: str, obj: Any, where: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in obj.items()}
    state = getattr(obj, "net_state", None)
    net = getattr(obj, "net", None)
    if net is not None:
        return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    if state is not None:
        return {k: np.asarray(v) for k, v in state.items()}
    raise ValueError(f"{model}: {where} holds a {type(obj).__name__}, not a state_dict or a fitted qexp PyTorch "
                     f"model; model_path must name the base model (e.g. a fitted LSTM or GRU)")


def apply_base_state(model: str, net: Any, state: dict[str, np.ndarray], base_model: str) -> list[str]:
    """Copy the base weights whose names ``net`` has (Qlib: the ``rnn`` and ``fc_out`` layers); returns the keys
    copied. A shared name with another shape (a base model of another size), or no shared name, is a clear
    error, as in Qlib, where ``load_state_dict`` refuses it."""
    import torch
    own = net.state_dict()
    common = [k for k in state if k in own]
    wrong = [f"{k} {tuple(np.shape(state[k]))} vs {tuple(own[k].shape)}" for k in common
             if tuple(np.shape(state[k])) != tuple(own[k].shape)]
    if wrong or not common:
        detail = ("shapes differ: " + "; ".join(wrong[:3])) if wrong else \
            "no layer names in common: " + ", ".join(list(state)[:4])
        raise ValueError(f"{model}: the base model does not fit the network (base_model={base_model!r}; its d_feat, "
                         f"hidden_size and num_layers must be the base model's): {detail}")
    own.update({k: torch.from_numpy(np.asarray(state[k])) for k in common})
    net.load_state_dict(own)
    return sorted(common)
