"""qexp_records: Qlib's record templates (SignalRecord, SigAnaRecord, PortAnaRecord, ...), a vectorised daily
backtest (TopkDropoutStrategy on a simulated exchange), the analysis formulas and ``qexp runs report``."""
from __future__ import annotations

from .contrib_records import MultiSegRecord, SignalMseRecord
from .evaluate import indicator_analysis, risk_analysis
from .port_ana_record import PortAnaRecord, default_port_analysis_config
from .record_temp import ACRecordTemp, MissingArtifactError, RecordTemp, SigAnaRecord, SignalRecord
from .signal_metrics import calc_ic, calc_long_short_return

__all__ = ["RecordTemp", "ACRecordTemp", "SignalRecord", "SigAnaRecord", "PortAnaRecord", "SignalMseRecord",
           "MultiSegRecord", "MissingArtifactError", "default_port_analysis_config", "risk_analysis",
           "indicator_analysis", "calc_ic", "calc_long_short_return"]
