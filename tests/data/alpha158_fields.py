"""Alpha158's 158 feature expressions as Qlib's Alpha158DL writes them (for engine tests and timing)."""
from __future__ import annotations

WINDOWS = (5, 10, 20, 30, 60)


def alpha158_fields() -> list[str]:
    f = ["($close-$open)/$open", "($high-$low)/$open", "($close-$open)/($high-$low+1e-12)",
         "($high-Greater($open, $close))/$open", "($high-Greater($open, $close))/($high-$low+1e-12)",
         "(Less($open, $close)-$low)/$open", "(Less($open, $close)-$low)/($high-$low+1e-12)",
         "(2*$close-$high-$low)/$open", "(2*$close-$high-$low)/($high-$low+1e-12)",
         "$open/$close", "$high/$close", "$low/$close", "$vwap/$close"]
    groups = [
        "Ref($close, %d)/$close", "Mean($close, %d)/$close", "Std($close, %d)/$close",
        "Slope($close, %d)/$close", "Rsquare($close, %d)", "Resi($close, %d)/$close",
        "Max($high, %d)/$close", "Min($low, %d)/$close", "Quantile($close, %d, 0.8)/$close",
        "Quantile($close, %d, 0.2)/$close", "Rank($close, %d)",
        "($close-Min($low, %d))/(Max($high, %d)-Min($low, %d)+1e-12)", "IdxMax($high, %d)/%d",
        "IdxMin($low, %d)/%d", "(IdxMax($high, %d)-IdxMin($low, %d))/%d", "Corr($close, Log($volume+1), %d)",
        "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), %d)", "Mean($close>Ref($close, 1), %d)",
        "Mean($close<Ref($close, 1), %d)", "Mean($close>Ref($close, 1), %d)-Mean($close<Ref($close, 1), %d)",
        "Sum(Greater($close-Ref($close, 1), 0), %d)/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)",
        "Sum(Greater(Ref($close, 1)-$close, 0), %d)/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)",
        "(Sum(Greater($close-Ref($close, 1), 0), %d)-Sum(Greater(Ref($close, 1)-$close, 0), %d))"
        "/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)",
        "Mean($volume, %d)/($volume+1e-12)", "Std($volume, %d)/($volume+1e-12)",
        "Std(Abs($close/Ref($close, 1)-1)*$volume, %d)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, %d)+1e-12)",
        "Sum(Greater($volume-Ref($volume, 1), 0), %d)/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)",
        "Sum(Greater(Ref($volume, 1)-$volume, 0), %d)/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)",
        "(Sum(Greater($volume-Ref($volume, 1), 0), %d)-Sum(Greater(Ref($volume, 1)-$volume, 0), %d))"
        "/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)",
    ]
    for g in groups:
        for d in WINDOWS:
            f.append(g % ((d,) * g.count("%d")))
    assert len(f) == 158, len(f)
    return f
