"""Open a bundle's models as :mod:`.stages`: onnxruntime sessions, or the given runners.

Why apart from :mod:`.pipeline`: building and checking the engines (providers, threads,
the classifier's output width against ``labels.json``) is one job; routing photos through
them is another. The :class:`~pillsnap_sdk.Identifier` owns what this returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnxruntime as ort

from .bundle.loader import Bundle
from .bundle.manifest import ModelSpec
from .errors import BundleError, InvalidArgumentError
from .runtime import ProviderArg, create_session
from .stages import ClassifierStage, DetectorStage, Runner

__all__ = ["Runners", "check_runner_objects", "open_stages"]


@dataclass(frozen=True, slots=True)
class Runners:
    """Engines to run the bundle's models with instead of onnxruntime (``None``: keep
    onnxruntime for that model). Preprocessing, routing and thresholds stay the bundle's."""

    classifier: Runner | None = None
    detector: Runner | None = None


def check_runner_objects(*, classifier: object, detector: object) -> None:
    """Refuse a runner without a callable ``run`` up front, as a caller error: found at the
    first photo instead, it read as "the model failed to run" and blamed the bundle."""
    for role, r in (("classifier", classifier), ("detector", detector)):
        if r is not None and not callable(getattr(r, "run", None)):
            raise InvalidArgumentError(
                f"{role} runner needs a run(output_names, feeds) method like "
                f"onnxruntime.InferenceSession, got {type(r).__name__}"
            )


def open_stages(
    bundle: Bundle,
    *,
    runners: Runners,
    providers: Sequence[ProviderArg],
    intra_op_threads: int | None,
    strict_providers: bool,
) -> tuple[ClassifierStage, DetectorStage | None]:
    """The classifier stage and (if the bundle has one) the detector stage.

    A bundle whose classifier output does not match its labels is refused here, once, so
    no photo is ever named from a misaligned class list.
    """
    m = bundle.manifest
    n_classes = len(bundle.labels.classes)

    def session(spec: ModelSpec, dynamic_batch: bool) -> ort.InferenceSession:
        return create_session(
            bundle.model_bytes(spec.file),
            spec,
            providers=providers,
            intra_op_threads=intra_op_threads,
            strict_providers=strict_providers,
            dynamic_batch=dynamic_batch,
        )

    cls_runner: Runner
    if runners.classifier is not None:
        cls_runner = runners.classifier
    else:
        sess = session(m.classifier, dynamic_batch=True)
        out = sess.get_outputs()[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != n_classes):
            raise BundleError(
                f"{m.classifier.file}: output shape {out} does not match "
                f"{n_classes} classes in labels.json"
            )
        cls_runner = sess
    batch_dim = m.classifier.input_shape[0]
    cls_stage = ClassifierStage(
        cls_runner,
        m.classifier.input_name,
        fixed_batch=batch_dim if isinstance(batch_dim, int) else None,
    )
    det_stage: DetectorStage | None = None
    if m.detector is not None:
        det_runner: Runner = (
            runners.detector
            if runners.detector is not None
            else session(m.detector, dynamic_batch=False)
        )
        det_stage = DetectorStage(det_runner, m.detector.input_name, m.detector.preprocessing)
    return cls_stage, det_stage
