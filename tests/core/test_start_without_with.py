"""R.start called in MLflow's start_run habit (without `with`) warns that no run was started."""
import warnings

import qexp
from qexp import R


def test_start_without_with_warns(tmp_path):
    qexp.init(uri=str(tmp_path / "runs"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        R.start(experiment_name="habit")
    assert any("without `with`" in str(x.message) for x in w), [str(x.message) for x in w]
    assert not R.has_active()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with R.start(experiment_name="ok") as exp:
            R.log_metrics(a=1.0)
        assert exp.name == "ok"
    assert not [x for x in w if "without `with`" in str(x.message)]
