"""``pillsnap-train release``: dataset -> trained, calibrated, exported, checked bundle.

One module per step, each returning a typed result (:mod:`.results`) that is written to
``work_dir/steps/<step>.json``; a rerun skips finished steps (:mod:`.workdir`).

- :mod:`.workdir`    config marker, step markers and resume; :class:`GateFailure`
- :mod:`.data`       the ingested records, classes, splits and photos
- :mod:`.crops`      classifier inputs for calibration, variants and checks (seeded)
- :mod:`.engines`    exported / trained models as SDK runners
- :mod:`.ingest`     step ``ingest``
- :mod:`.train`      steps ``train-classifier`` and ``train-detector``
- :mod:`.export`     step ``export``
- :mod:`.calibrate`  step ``calibrate``
- :mod:`.variants`   step ``variants``
- :mod:`.checks`     the candidate bundle's checks and the gates
- :mod:`.package`    step ``package``: specs, checks, publishing
- :mod:`.run`        :class:`Release` and :func:`run_release`: the steps in order
"""

from __future__ import annotations

from .run import STEPS, Release, run_release
from .train import _best_ap50 as _best_ap50  # tests read it here
from .workdir import GateFailure

__all__ = ["STEPS", "GateFailure", "Release", "run_release"]
