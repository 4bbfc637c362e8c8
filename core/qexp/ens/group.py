"""Groups (``qlib/model/ens/group.py``): regroup a dict of results, then reduce each group with an ensemble."""
from __future__ import annotations

from typing import Any, Callable

from .ensemble import Ensemble, RollingEnsemble


class Group:
    """``group_func`` turns ``{key: x}`` into ``{group: {sub key: x}}``; ``ens`` reduces each group."""

    def __init__(self, group_func: Callable | None = None, ens: Ensemble | Callable | None = None):
        self._group_func = group_func
        self._ens_func = ens

    def group(self, *args: Any, **kwargs: Any) -> dict:
        """``{(A, B, C1): x, (A, B, C2): y}`` -> ``{(A, B): {C1: x, C2: y}}``."""
        if callable(getattr(self, "_group_func", None)):
            return self._group_func(*args, **kwargs)  # type: ignore[misc]
        raise NotImplementedError("Please specify valid `group_func`.")

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        """``{C1: x, C2: y}`` -> one object."""
        if callable(getattr(self, "_ens_func", None)):
            return self._ens_func(*args, **kwargs)  # type: ignore[misc]
        raise NotImplementedError("Please specify valid `_ens_func`.")

    def __call__(self, ungrouped_dict: dict, n_jobs: int = 1, verbose: int = 0, *args: Any, **kwargs: Any) -> dict:
        """Group, then reduce every group (on ``n_jobs`` joblib workers when more than 1)."""
        grouped = self.group(ungrouped_dict, *args, **kwargs)
        keys = list(grouped)
        if n_jobs == 1 or len(keys) < 2:
            return {k: self.reduce(grouped[k]) for k in keys}
        from joblib import Parallel, delayed
        results = Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(Group.reduce)(self, grouped[k]) for k in keys)
        return dict(zip(keys, results))


class RollingGroup(Group):
    """Groups ``{(A, B, R): x}`` by all but the last key part (the rolling window): ``{(A, B): {R: x}}``,
    then merges each group with ``ens`` (a :class:`RollingEnsemble` by default)."""

    def __init__(self, ens: Ensemble | Callable | None = None):
        super().__init__(ens=RollingEnsemble() if ens is None else ens)

    def group(self, rolling_dict: dict) -> dict:
        grouped: dict = {}
        for key, value in rolling_dict.items():
            if not isinstance(key, tuple):
                raise TypeError(f"Expected `tuple` type, but got a value `{key}`")
            grouped.setdefault(key[:-1], {})[key[-1]] = value
        return grouped
