"""Registration of the record templates, strategies and executor under Qlib's names and module paths,
so a Qlib config (``class: SigAnaRecord, module_path: qlib.workflow.record_temp``) resolves to them."""
from __future__ import annotations

from typing import Callable


def register_components(register: Callable[..., None]) -> None:
    from .backtest.engine import SimulatorExecutor
    from .backtest.strategy import TopkDropoutStrategy
    from .contrib_records import MultiSegRecord, SignalMseRecord
    from .evaluate import indicator_analysis, risk_analysis
    from .multipass import MultiPassPortAnaRecord
    from .port_ana_record import PortAnaRecord
    from .record_temp import ACRecordTemp, RecordTemp, SigAnaRecord, SignalRecord

    records: tuple[type, ...] = (RecordTemp, ACRecordTemp, SignalRecord, SigAnaRecord, PortAnaRecord,
                                 MultiPassPortAnaRecord)
    for cls in records:
        register(cls, name=cls.__name__, module_paths=("qlib.workflow.record_temp",))
    contrib: tuple[type, ...] = (SignalMseRecord, MultiSegRecord)
    for cls in contrib:
        register(cls, name=cls.__name__, module_paths=("qlib.contrib.workflow.record_temp",
                                                       "qlib.contrib.workflow"))
    register(TopkDropoutStrategy, name="TopkDropoutStrategy",
             module_paths=("qlib.contrib.strategy", "qlib.contrib.strategy.signal_strategy",
                           "qlib.contrib.strategy.strategy"))  # the last: Qlib's pre-0.8 configs
    register(SimulatorExecutor, name="SimulatorExecutor", module_paths=("qlib.backtest.executor",))
    # the analysis functions, so {"func": "risk_analysis", "module_path": "qlib.contrib.evaluate"} resolves
    for func in (risk_analysis, indicator_analysis):
        register(func, name=func.__name__, module_paths=("qlib.contrib.evaluate",))
