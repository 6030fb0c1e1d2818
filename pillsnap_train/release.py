"""``pillsnap-train release``: dataset -> trained, calibrated, exported, checked bundle.

Each step writes its outputs under ``work_dir`` and a ``steps/<step>.json`` marker; a rerun
skips finished steps (resume after a crash or a stopped session) unless ``force``. The
config's hash is stored, and a changed config on an existing work dir is refused rather
than mixing artefacts of two configs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.manifest import LabelsFile
from pillsnap_sdk.image import load_image
from pillsnap_sdk.postprocess import calibrated_softmax, decode_yolo, is_identified
from pillsnap_sdk.preprocessing import PreprocessSpec, crop_with_margin, preprocess
from pillsnap_sdk.version import __version__

from .calibrate import (
    abstention_report,
    box_iou,
    choose_abstention,
    choose_detector_threshold,
    choose_unknown_threshold,
    expected_calibration_error,
    fit_temperature,
)
from .config import ReleaseConfig
from .data.records import BoxRecord, ClassInfo, class_table, group_by_image, read_manifest
from .eta import ReleaseEta
from .evaluate import GroundTruthImage, classifier_agreement, score_pipeline, with_torch_models
from .package import labels_file, package_bundle, render_model_card, write_report

__all__ = ["STEPS", "GateFailure", "Release", "run_release"]

F32 = npt.NDArray[np.float32]
STEPS = (
    "ingest",
    "train-classifier",
    "train-detector",
    "export",
    "calibrate",
    "variants",
    "package",
)
#: Synthetic plain-table scenes in the release report's robustness rows (~1 s each on CPU).
ROBUSTNESS_SCENES = 30
#: Synthetic dense piles (25-40 pills) in the robustness rows.
ROBUSTNESS_PILES = 10
#: Camera-shifted copies and pixel scales of each validation photo that the abstention
#: thresholds are chosen on, beside the clean crops (``calibration.max_confident_wrong``).
SHIFT_COPIES = 2
SHIFT_SCALES = (0.5, 2.5)


class GateFailure(RuntimeError):
    """A release gate failed; the bundle is not published."""


def _log(msg: str) -> None:
    print(f"[pillsnap-train] {msg}", flush=True)


class Release:
    """State of one release run over ``cfg.work_dir``."""

    def __init__(
        self,
        cfg: ReleaseConfig,
        *,
        allow_config_change: bool = False,
        command: str = "",
        read_only: bool = False,
    ) -> None:
        """``read_only`` opens an existing work_dir to read its data (e.g. the validation
        split for an evaluation) without checking or rewriting its config marker."""
        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self.allow_config_change = allow_config_change
        self.command = command or "pillsnap-train release --config CONFIG"
        self.steps_dir = self.work / "steps"
        if not read_only:
            self.steps_dir.mkdir(parents=True, exist_ok=True)
            self._check_config()
        self._records: list[BoxRecord] | None = None
        self._extra: list[BoxRecord] | None = None

    # -- bookkeeping -------------------------------------------------------------------
    def _check_config(self) -> None:
        text = self.cfg.model_dump_json()
        digest = hashlib.sha256(text.encode()).hexdigest()
        marker = self.work / "config.sha256"
        changed = marker.is_file() and marker.read_text().strip() != digest
        if changed and not self.allow_config_change:
            raise GateFailure(
                f"{self.work} was produced by a different config; use a new work_dir, or "
                "--allow-config-change (and --redo the steps the change affects)"
            )
        marker.write_text(digest + "\n")
        (self.work / "config.json").write_text(json.dumps(json.loads(text), indent=2) + "\n")

    def done(self, step: str) -> dict[str, Any] | None:
        p = self.steps_dir / f"{step}.json"
        if p.is_file():
            data: dict[str, Any] = json.loads(p.read_text())
            return data
        return None

    def mark(self, step: str, info: dict[str, Any]) -> dict[str, Any]:
        (self.steps_dir / f"{step}.json").write_text(
            json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
        )
        return info

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        prev = self.done(name)
        if prev is not None:
            _log(f"{name}: done earlier, skipping (delete {self.steps_dir / name}.json to redo)")
            return prev
        _log(f"{name}: running")
        t = time.perf_counter()
        info = fn()
        info["seconds"] = round(time.perf_counter() - t, 1)
        _log(f"{name}: finished in {info['seconds']:.0f} s")
        return self.mark(name, info)

    # -- data --------------------------------------------------------------------------
    @property
    def manifest_csv(self) -> Path:
        return self.work / "data" / "manifest.csv"

    def records(self) -> list[BoxRecord]:
        if self._records is None:
            self._records = read_manifest(self.manifest_csv)
        return self._records

    def classes(self) -> list[ClassInfo]:
        holdout = set(self.cfg.data.holdout_classes)
        return [c for c in class_table(self.records()) if c.code not in holdout]

    def split(self, name: str) -> list[BoxRecord]:
        return [r for r in self.records() if r.split == name]

    @property
    def detector_extra_csv(self) -> Path:
        return self.work / "data" / "detector_extra.csv"

    def detector_extra(self) -> list[BoxRecord]:
        """Boxes of ``data.detector_sources`` (detector only; empty when none)."""
        if not self.cfg.data.detector_sources:
            return []
        if self._extra is None:
            self._extra = read_manifest(self.detector_extra_csv)
        return self._extra

    def ingest(self) -> dict[str, Any]:
        from .data.ingest import SourceSpec, ingest

        d = self.cfg.data
        extra: dict[str, Any] | None = None
        if d.detector_sources:
            res_x = ingest(
                [
                    SourceSpec(kind=s.kind, path=Path(s.path), name=s.name or Path(s.path).name)
                    for s in d.detector_sources
                ],
                self.detector_extra_csv,
                val_fraction=d.val_fraction,
                seed=self.cfg.seed,
            )
            self._extra = None
            extra = {
                "manifest": str(self.detector_extra_csv),
                "images": res_x.report.images,
                "boxes": res_x.report.boxes,
                "dataset_sha256": res_x.report.dataset_sha256,
            }
        specs = [
            SourceSpec(kind=s.kind, path=Path(s.path), name=s.name or Path(s.path).name)
            for s in d.sources
        ]
        res = ingest(
            specs,
            self.manifest_csv,
            val_fraction=d.val_fraction,
            seed=self.cfg.seed,
            holdout_classes=d.holdout_classes,
            max_classes=d.max_classes,
            max_samples=d.max_samples,
            single_combo_ratio=d.single_combo_ratio,
        )
        self._records = None
        rep = res.report
        skipped = sum(sum(r.skipped_counts.values()) for r in rep.readers)
        subset = rep.subset.model_dump(mode="json") if rep.subset else None
        return {
            "manifest": str(self.manifest_csv),
            "report_file": str(res.report_path),
            "images": rep.images,
            "boxes": rep.boxes,
            "skipped": skipped,
            "skipped_counts": [r.skipped_counts for r in rep.readers],
            "subset": subset,
            "dataset_sha256": rep.dataset_sha256,
            "detector_extra": extra,
        }

    # -- classifier ----------------------------------------------------------------------
    def _samples(self, split: str, whole: bool) -> list[Any]:
        from .classifier.data import ClassifierSample

        index = {c.code: i for i, c in enumerate(self.classes())}
        out = []
        for path, boxes in sorted(group_by_image(self.split(split)).items()):
            for b in boxes:
                if b.class_code in index:
                    out.append(ClassifierSample(path, b.box, index[b.class_code]))
            if whole and len(boxes) == 1 and boxes[0].class_code in index:
                out.append(ClassifierSample(path, None, index[boxes[0].class_code]))
        return out

    def train_classifier(self) -> dict[str, Any]:
        from .classifier.train import train_classifier

        res = train_classifier(
            self._samples("train", self.cfg.classifier.whole_photo),
            self._samples("val", False),
            len(self.classes()),
            self.work / "classifier",
            self.cfg.classifier,
        )
        return {
            "best": str(res.best_checkpoint),
            "best_val_top1": res.best_top1,
            "history": res.history,
        }

    # -- detector ------------------------------------------------------------------------
    def _det_items(
        self, split: str, *, extra: bool = True
    ) -> list[tuple[str, list[tuple[float, float, float, float]]]]:
        """Photos and boxes for the detector: ``sources`` plus (``extra``) detector_sources."""
        recs = self.split(split)
        if extra:
            recs = recs + [r for r in self.detector_extra() if r.split == split]
        return [(p, [b.box for b in boxes]) for p, boxes in sorted(group_by_image(recs).items())]

    def train_detector(self) -> dict[str, Any]:
        dc = self.cfg.detector
        if not dc.enabled:
            return {"enabled": False}
        from .detector.dataset import build_detector_dataset

        data_dir = self.work / "detector" / "dataset"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        yaml_path = build_detector_dataset(
            data_dir,
            self._det_items("train"),
            self._det_items("val"),
            synth_scenes=dc.synth_scenes,
            pile_scenes=dc.pile_scenes,
            seed=self.cfg.seed,
            photometric_fraction=dc.photometric_fraction,
        )
        if dc.threads:
            from .torch_compat import ensure_torchvision

            ensure_torchvision()
            import torch

            torch.set_num_threads(dc.threads)
        best = self._detector_stage(yaml_path, "train", dc.epochs)
        stages = {"train": _best_ap50(self.work / "detector" / "train")}
        more = [(dc.finetune_epochs, dc.finetune_lr0)] if dc.finetune_epochs > 0 else []
        more += [(st.epochs, st.lr0) for st in dc.extra_stages]
        kept = "train"
        for k, (epochs, lr0) in enumerate(more):  # low-lr stages from the best weights so far
            name = "finetune" if k == 0 else f"finetune{k + 1}"
            tuned = self._detector_stage(yaml_path, name, epochs, init_weights=best, lr0=lr0)
            stages[name] = _best_ap50(self.work / "detector" / name)
            # A first stage still improving when its budget ends can lose points to the
            # next stage's warm-up; never ship the worse (by AP@0.5, the IoU the release
            # scores pills at).
            if stages[name] >= stages[kept]:
                best, kept = tuned, name
        return {"enabled": True, "best": str(best), "stage_ap50": stages, "kept_stage": kept}

    def _detector_stage(self, data_yaml: Path, name: str, epochs: int, **stage: Any) -> Path:
        """One Ultralytics run under ``detector/<name>``; a finished run is reused on resume."""
        from .detector.train import train_detector

        dc = self.cfg.detector
        return Path(
            train_detector(
                data_yaml,
                self.work / "detector" / name,
                model=dc.model,
                imgsz=dc.imgsz,
                epochs=epochs,
                batch=dc.batch,
                seed=self.cfg.seed,
                workers=dc.workers,
                resume=True,
                cache="ram",
                augment=dc.extra or None,
                **stage,
            )
        )

    # -- export ----------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        from .classifier.train import load_trained
        from .export.onnx_export import export_classifier_onnx

        out = self.work / "export"
        model, ccfg = load_trained(Path(self.done_info("train-classifier")["best"]))
        export_classifier_onnx(model, out / "classifier.onnx", ccfg.img_size)
        info: dict[str, Any] = {"classifier": str(out / "classifier.onnx")}
        det = self.done_info("train-detector")
        if det.get("enabled"):
            from .detector.export import export_detector_onnx

            export_detector_onnx(
                Path(det["best"]), out / "detector.onnx", imgsz=self.cfg.detector.imgsz
            )
            info["detector"] = str(out / "detector.onnx")
        return info

    def done_info(self, step: str) -> dict[str, Any]:
        p = self.steps_dir / f"{step}.json"
        if not p.is_file():
            raise GateFailure(f"step {step} has not run yet")
        data: dict[str, Any] = json.loads(p.read_text())
        return data

    # -- specs -----------------------------------------------------------------------------
    def classifier_spec(self) -> PreprocessSpec:
        from .classifier.train import classifier_spec

        return classifier_spec(self.cfg.classifier)

    def detector_spec(self) -> PreprocessSpec:
        s = self.cfg.detector.imgsz
        return PreprocessSpec(
            resize="letterbox", size=(s, s), interpolation="linear", pad_value=114
        )

    def _ort(self, path: Path) -> Any:
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def _crop_batches(
        self, split: str, *, with_labels: bool = True, holdout: bool = False
    ) -> tuple[F32, npt.NDArray[np.int64]]:
        spec, margin = self.classifier_spec(), self.cfg.classifier.crop_margin
        index = {c.code: i for i, c in enumerate(self.classes())}
        xs, ys = [], []
        for path, boxes in sorted(group_by_image(self.split(split)).items()):
            rgb = load_image(path)
            for b in boxes:
                if holdout or b.class_code in index:
                    xs.append(preprocess(crop_with_margin(rgb, b.box, margin), spec)[0])
                    ys.append(index.get(b.class_code, -1))
        if not xs:
            return np.zeros((0, 3, *spec.size), np.float32), np.zeros(0, np.int64)
        return np.stack(xs), np.asarray(ys, np.int64)

    def _background_batch(self, n: int = 200) -> F32:
        """Crops of photo regions without pills: should come out "unknown"."""
        spec, rng = self.classifier_spec(), np.random.default_rng(self.cfg.seed)
        xs: list[F32] = []
        items = sorted(group_by_image(self.split("val")).items())
        for _ in range(n * 5):
            if len(xs) >= n or not items:
                break
            path, boxes = items[int(rng.integers(len(items)))]
            rgb = load_image(path)
            h, w = rgb.shape[:2]
            side = float(np.median([max(b.x2 - b.x1, b.y2 - b.y1) for b in boxes]))
            x1, y1 = rng.uniform(0, max(1, w - side)), rng.uniform(0, max(1, h - side))
            cand = np.array([[x1, y1, x1 + side, y1 + side]], np.float32)
            truth = np.array([b.box for b in boxes], np.float32)
            if box_iou(cand, truth).max(initial=0.0) > 0.05:
                continue
            xs.append(preprocess(crop_with_margin(rgb, tuple(cand[0]), 0.0), spec)[0])
        return np.stack(xs) if xs else np.zeros((0, 3, *spec.size), np.float32)

    @staticmethod
    def _logits(sess: Any, x: F32, batch: int = 64) -> F32:
        if len(x) == 0:
            return np.zeros((0, 0), np.float32)
        name = sess.get_inputs()[0].name
        return np.concatenate(
            [
                np.asarray(sess.run(None, {name: x[i : i + batch]})[0])
                for i in range(0, len(x), batch)
            ]
        ).astype(np.float32)

    # -- calibrate ---------------------------------------------------------------------------
    def calibrate(self) -> dict[str, Any]:
        exp = self.done_info("export")
        cc = self.cfg.calibration
        sess = self._ort(Path(exp["classifier"]))
        x, y = self._crop_batches("val")
        logits = self._logits(sess, x)
        t = fit_temperature(logits, y)
        p1, pt = calibrated_softmax(logits, 1.0), calibrated_softmax(logits, t)
        hold_x, hold_y = self._crop_batches("holdout", holdout=True)
        # Holdout photos also show known drugs (a table photo holds all of them): only the
        # pills of held-out classes (label -1) measure how often unknown drugs are refused.
        hold_x = hold_x[hold_y < 0]
        hold_p = calibrated_softmax(self._logits(sess, hold_x), t) if len(hold_x) else None
        unk = choose_unknown_threshold(pt, y, hold_p, target_accept=cc.target_known_accept)
        threshold, margin = unk.threshold, 0.0
        abstention: dict[str, Any] | None = None
        if cc.max_confident_wrong is not None:
            # Thresholds from clean *and* camera-shifted crops of the validation photos: a
            # rule that only holds on this camera's colours would not hold on another's.
            sx, sy = self._shifted_crop_batches("val")
            sp = calibrated_softmax(self._logits(sess, sx), t) if len(sx) else pt[:0]
            both_p, both_y = np.concatenate([pt, sp]), np.concatenate([y, sy])
            ab = choose_abstention(both_p, both_y, max_wrong=cc.max_confident_wrong)
            threshold, margin = ab.threshold, ab.margin
            clean = abstention_report(pt, y, threshold, margin)
            shifted = abstention_report(sp, sy, threshold, margin)
            abstention = {"chosen_on": asdict(ab), "clean_val": clean, "shifted_val": shifted}
            if hold_p is not None:
                abstention["holdout_reject"] = float(
                    (~is_identified(hold_p, threshold, margin)).mean()
                )
        bg = self._background_batch()
        bg_p = calibrated_softmax(self._logits(sess, bg), t) if len(bg) else None
        bg_reject = (
            float((~is_identified(bg_p, threshold, margin)).mean()) if bg_p is not None else None
        )
        top = np.argsort(-pt, axis=1)
        per_class = []
        for i, c in enumerate(self.classes()):
            m = y == i
            per_class.append(
                {
                    "code": c.code,
                    "name": c.name,
                    "n": int(m.sum()),
                    "top1": float((top[m, 0] == i).mean()) if m.any() else None,
                }
            )
        info: dict[str, Any] = {
            "temperature": t,
            "ece_before": expected_calibration_error(p1, y),
            "ece_after": expected_calibration_error(pt, y),
            "unknown": {**asdict(unk), "threshold": threshold, "margin": margin},
            "abstention": abstention,
            "background_reject": bg_reject,
            "n_background": len(bg),
            "val_top1": float((top[:, 0] == y).mean()) if len(y) else 0.0,
            "val_top5": float((top[:, :5] == y[:, None]).any(1).mean()) if len(y) else 0.0,
            "per_class": per_class,
        }
        if "detector" in exp:
            info["detector"] = asdict(self._detector_threshold(Path(exp["detector"])))
        return info

    def _shifted_crop_batches(self, split: str) -> tuple[F32, npt.NDArray[np.int64]]:
        """Crops of ``split``'s photos under :data:`SHIFT_COPIES` random camera shifts each
        (white balance, exposure, noise, blur, JPEG: ``synth.photometric_jitter``) and
        :data:`SHIFT_SCALES` pixel scales (a farther or a 12 MP camera). Seeded."""
        from .classifier.augment import rescale
        from .data.synth import photometric_jitter

        spec, margin = self.classifier_spec(), self.cfg.classifier.crop_margin
        index = {c.code: i for i, c in enumerate(self.classes())}
        xs, ys = [], []
        for k, (path, boxes) in enumerate(sorted(group_by_image(self.split(split)).items())):
            rgb = load_image(path)
            known = [b for b in boxes if b.class_code in index]
            for j in range(SHIFT_COPIES):
                rng = np.random.default_rng([self.cfg.seed, 90210, k, j])
                shifted = photometric_jitter(rgb, rng)
                for b in known:
                    xs.append(preprocess(crop_with_margin(shifted, b.box, margin), spec)[0])
                    ys.append(index[b.class_code])
            for f in SHIFT_SCALES:
                rng = np.random.default_rng([self.cfg.seed, 4711, k])
                for b in known:
                    crop = rescale(crop_with_margin(rgb, b.box, margin), f, rng)
                    xs.append(preprocess(crop, spec)[0])
                    ys.append(index[b.class_code])
        if not xs:
            return np.zeros((0, 3, *spec.size), np.float32), np.zeros(0, np.int64)
        return np.stack(xs), np.asarray(ys, np.int64)

    def _raw_detections(self, sess: Any, rgb: npt.NDArray[np.uint8]) -> tuple[F32, F32]:
        spec = self.detector_spec()
        tensor, geom = preprocess(rgb, spec)
        name = sess.get_inputs()[0].name
        raw = np.asarray(sess.run(None, {name: tensor[None]})[0], np.float32)
        boxes, scores = decode_yolo(
            raw, 0.01, self.cfg.calibration.nms_iou, self.cfg.calibration.max_detections
        )
        return geom.to_source(boxes), scores

    def _detector_threshold(self, onnx_path: Path) -> Any:
        """Threshold by max F1 on every detector validation photo (detector_sources too)."""
        sess = self._ort(onnx_path)
        per_image = []
        for path, boxes in self._det_items("val"):
            pred, scores = self._raw_detections(sess, load_image(path))
            per_image.append((pred, scores, np.array(boxes, np.float32).reshape(-1, 4)))
        return choose_detector_threshold(per_image)

    # -- variants ------------------------------------------------------------------------------
    def variants(self) -> dict[str, Any]:
        from .export.variants import gate_variant, make_fp16, make_int8

        exp = self.done_info("export")
        fp32 = Path(exp["classifier"])
        x, y = self._crop_batches("val")
        train_x, _ = self._crop_batches("train")
        rng = np.random.default_rng(self.cfg.seed)
        n_cal = min(self.cfg.export.int8_calibration_crops, len(train_x))
        calib = train_x[rng.choice(len(train_x), n_cal, replace=False)] if n_cal else train_x
        calib_batches = [calib[i : i + 16] for i in range(0, len(calib), 16)]
        eval_batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]
        timing = x[:8] if len(x) else np.zeros((8, 3, *self.classifier_spec().size), np.float32)
        reports = []
        for precision in self.cfg.export.variants:
            dst = fp32.with_name(f"classifier_{precision}.onnx")
            try:
                if precision == "fp16":
                    make_fp16(fp32, dst)
                else:
                    make_int8(fp32, dst, "input", calib_batches)
                rep = gate_variant(
                    precision,
                    dst,
                    fp32,
                    "input",
                    eval_batches,
                    timing,
                    max_top1_drop=self.cfg.gates.max_variant_top1_drop,
                )
                reports.append(asdict(rep))
            except Exception as exc:  # a variant that cannot be built is simply not released
                reports.append(
                    {
                        "precision": precision,
                        "file": dst.name,
                        "top1": 0.0,
                        "top1_drop": 1.0,
                        "latency_ms": 0.0,
                        "speedup": 0.0,
                        "size_bytes": 0,
                        "size_ratio": 0.0,
                        "released": False,
                        "reason": f"build failed: {exc}"[:200],
                    }
                )
            _log(f"variant {precision}: {reports[-1]['reason']}")
        return {"variants": reports}

    # -- package + end-to-end checks -----------------------------------------------------------
    def gt_images(self, split: str) -> list[GroundTruthImage]:
        """Every photo of ``split`` with its boxes and class codes (needs ``ingest`` done)."""
        out = []
        for path, boxes in sorted(group_by_image(self.split(split)).items()):
            out.append(
                GroundTruthImage(
                    path,
                    np.array([b.box for b in boxes], np.float32),
                    [b.class_code for b in boxes],
                )
            )
        return out

    def package(self) -> dict[str, Any]:
        cfg, exp, cal = self.cfg, self.done_info("export"), self.done_info("calibrate")
        var = self.done_info("variants")
        labels = labels_file(self.classes())
        det = cal.get("detector")
        thresholds = {
            "temperature": cal["temperature"],
            "unknown_threshold": cal["unknown"]["threshold"],
            "unknown_margin": cal["unknown"].get("margin", 0.0),
            "detector_confidence": det["threshold"] if det else 0.25,
            "nms_iou": cfg.calibration.nms_iou,
            "max_detections": cfg.calibration.max_detections,
            "crop_margin": cfg.classifier.crop_margin,
        }
        n = cfg.classifier.img_size
        cls_spec = {
            "precision": "fp32",
            "input_name": "input",
            "input_shape": ["N", 3, n, n],
            "preprocessing": self.classifier_spec().model_dump(),
            "output_format": "logits",
        }
        det_path = Path(exp["detector"]) if "detector" in exp else None
        s = cfg.detector.imgsz
        det_spec = (
            {
                "precision": "fp32",
                "input_name": "images",
                "input_shape": [1, 3, s, s],
                "preprocessing": self.detector_spec().model_dump(),
                "output_format": "yolo_cxcywh",
            }
            if det_path
            else None
        )
        released = [v for v in var["variants"] if v["released"]]
        variants = [
            (
                Path(exp["classifier"]).with_name(v["file"]),
                {
                    "role": "classifier",
                    "precision": v["precision"],
                    "metrics": {
                        "top1": v["top1"],
                        "top1_drop": v["top1_drop"],
                        "speedup": v["speedup"],
                        "latency_ms": v["latency_ms"],
                    },
                },
            )
            for v in released
        ]
        ingest = self.done_info("ingest")
        report: dict[str, Any] = {
            "name": cfg.name,
            "version": cfg.version,
            "description": cfg.description,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": __version__,
            "command": self.command,
            "trained_on": f"CPU ({platform.processor() or platform.machine()}), "
            f"python {sys.version.split()[0]}",
            "credits": [c.model_dump() for c in cfg.data.credits],
            "data": self._data_summary(ingest),
            "classifier": {
                "val_top1": cal["val_top1"],
                "val_top5": cal["val_top5"],
                "per_class": cal["per_class"],
                "history": self.done_info("train-classifier").get("history", []),
            },
            "detector": det or {},
            "calibration": cal,
            "variants": var["variants"],
            "limitations": cfg.limitations,
            "thresholds": thresholds,
        }
        extra = {
            # 0.3.0: ``area-linear`` interpolation and ``unknown_margin``.
            "min_sdk_version": "0.3.0",
            "thresholds": thresholds,
            "metrics": {},
            "provenance": {
                "dataset_sha256": ingest.get("dataset_sha256", ""),
                "training_config": json.loads(cfg.model_dump_json()),
                "code_version": __version__,
                "trained_on": report["trained_on"],
            },
            "data": [c.model_dump() for c in cfg.data.credits],
        }
        stage = self.work / "bundle"
        candidate = stage / "candidate"
        shutil.rmtree(stage, ignore_errors=True)
        common: dict[str, Any] = {
            "name": cfg.name,
            "version": cfg.version,
            "classifier_onnx": Path(exp["classifier"]),
            "classifier_spec": cls_spec,
            "detector_onnx": det_path,
            "detector_spec": det_spec,
            "variants": variants,
            "labels": labels,
        }
        package_bundle(
            candidate,
            manifest_extra=extra,
            report=report,
            zip_path=stage / "candidate.zip",
            **common,
        )
        report.update(self._checks(candidate, labels))
        report["gates"] = self._gates(report)
        extra["metrics"] = {
            "val_top1": cal["val_top1"],
            "val_top5": cal["val_top5"],
            "detector_ap50": (det or {}).get("ap50"),
            "end_to_end_accuracy": report["end_to_end"]["end_to_end_accuracy"],
            "unknown_rate": report["end_to_end"]["unknown_rate"],
            "confident_wrong_rate": report["end_to_end"]["confident_wrong_rate"],
        }
        final = stage / cfg.name
        bundle_dir, zip_path = package_bundle(
            final,
            manifest_extra=extra,
            report=report,
            zip_path=stage / f"{cfg.name}-{cfg.version}.zip",
            **common,
        )
        write_report(stage / "report.json", report)
        failed = [g for g in report["gates"] if g["status"] == "fail"]
        info = {
            "bundle": str(bundle_dir),
            "zip": str(zip_path),
            "report": str(stage / "report.json"),
            "gates": report["gates"],
            "published": None,
        }
        if failed:
            (stage / "MODEL_CARD.md").write_text(render_model_card(report))
            raise GateFailure("; ".join(f"{g['name']}: {g['detail']}" for g in failed))
        dest = Path(cfg.output_dir) / cfg.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(bundle_dir, dest)
        info["published"] = str(dest)
        return info

    def _data_summary(self, ingest: dict[str, Any]) -> dict[str, Any]:
        recs = self.records()
        images: dict[str, int] = {}
        boxes: dict[str, int] = {}
        for split in ("train", "val", "test", "holdout"):
            sel = [r for r in recs if r.split == split]
            if sel:
                boxes[split] = len(sel)
                images[split] = len({r.image_path for r in sel})
        skipped = ingest.get("skipped", 0)
        return {
            "images": images,
            "boxes": boxes,
            "n_classes": len(self.classes()),
            "skipped": skipped,
            "dataset_sha256": ingest.get("dataset_sha256", ""),
        }

    def _checks(self, bundle: Path, labels: LabelsFile) -> dict[str, Any]:
        """SDK end-to-end accuracy, robustness to camera/table shifts (informative, no gate),
        torch-vs-ONNX parity (classifier, detector, pipeline)."""
        from .classifier.train import load_trained
        from .robustness import evaluate_robustness

        idf = Identifier.from_bundle(bundle)
        val = self.gt_images("val")
        onnx_score = score_pipeline(lambda p: idf.identify(p), val)
        robustness = [
            r.as_dict()
            for r in evaluate_robustness(
                idf,
                val,
                plain_table=ROBUSTNESS_SCENES,
                dense_piles=ROBUSTNESS_PILES,
                seed=self.cfg.seed + 1234,
            )
        ]
        model, _ = load_trained(Path(self.done_info("train-classifier")["best"]))
        x, _ = self._crop_batches("val")
        torch_logits = _torch_logits(model, x)
        onnx_logits = self._logits(self._ort(Path(self.done_info("export")["classifier"])), x)
        parity: dict[str, Any] = {"classifier": classifier_agreement(torch_logits, onnx_logits)}
        det_module = None
        det_info = self.done_info("train-detector")
        if det_info.get("enabled"):
            det_module = _load_yolo_module(Path(det_info["best"]))
            parity["detector"] = self._detector_parity(det_module, idf)
        torch_idf = with_torch_models(idf, model, det_module)
        torch_score = score_pipeline(lambda p: torch_idf.identify(p), val)
        parity["pipeline"] = {
            "onnx_accuracy": onnx_score.accuracy,
            "torch_accuracy": torch_score.accuracy,
            "delta": abs(onnx_score.accuracy - torch_score.accuracy),
        }
        latency = self._latency(bundle)
        return {
            "end_to_end": onnx_score.as_dict(),
            "robustness": robustness,
            "parity": parity,
            "latency": latency,
        }

    def _detector_parity(self, module: Any, idf: Identifier) -> dict[str, Any]:
        from .evaluate import TorchRunner

        runner = TorchRunner(module, first_output=True)
        spec = self.detector_spec()
        matched = total = 0
        sess = self._ort(Path(self.done_info("export")["detector"]))
        for gt in self.gt_images("val"):
            rgb = load_image(gt.path)
            tensor, _ = preprocess(rgb, spec)
            a = runner.run(None, {"images": tensor[None]})[0]
            b = np.asarray(sess.run(None, {"images": tensor[None]})[0], np.float32)
            th = idf.manifest.thresholds
            ba, _ = decode_yolo(a, th.detector_confidence, th.nms_iou, th.max_detections)
            bb, _ = decode_yolo(b, th.detector_confidence, th.nms_iou, th.max_detections)
            total += max(len(ba), len(bb))
            if len(ba) and len(bb):
                iou = box_iou(ba, bb)
                matched += int((iou.max(axis=1) >= self.cfg.gates.min_detector_box_iou).sum())
        return {"matched_fraction": matched / total if total else 1.0, "boxes": total}

    def _latency(self, bundle: Path) -> dict[str, Any]:
        from .latency import rows_as_dicts, run_latency_gate

        val = self.gt_images("val") or self.gt_images("train")
        if not val:
            return {"rows": []}
        single = min(val, key=lambda g: len(g.codes))
        multi = max(val, key=lambda g: len(g.codes))
        cases = [("single_pill", Path(single.path)), ("multi_pill", Path(multi.path))]
        return {
            "rows": rows_as_dicts(run_latency_gate(bundle, cases, rounds=5)),
            "photos": {"single_pill": single.path, "multi_pill": multi.path},
        }

    def _gates(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        g, par = self.cfg.gates, report["parity"]
        gates = []

        def add(name: str, ok: bool | None, detail: str) -> None:
            gates.append(
                {
                    "name": name,
                    "detail": detail,
                    "status": "not run" if ok is None else ("pass" if ok else "fail"),
                }
            )

        agree = par["classifier"]["top1_agreement"]
        add(
            "classifier parity",
            agree >= g.min_top1_agreement,
            f"top-1 agreement {agree:.4f} (>= {g.min_top1_agreement}), max abs logit diff "
            f"{par['classifier']['max_abs_logit_diff']:.2e}",
        )
        if "detector" in par:
            frac = par["detector"]["matched_fraction"]
            add(
                "detector parity",
                frac >= g.min_top1_agreement,
                f"{frac:.4f} of boxes matched at IoU >= {g.min_detector_box_iou}",
            )
        delta = par["pipeline"]["delta"]
        add(
            "pipeline parity",
            delta <= g.max_pipeline_accuracy_delta,
            f"SDK {par['pipeline']['onnx_accuracy']:.4f} vs torch "
            f"{par['pipeline']['torch_accuracy']:.4f} (|delta| <= "
            f"{g.max_pipeline_accuracy_delta})",
        )
        top1 = report["classifier"]["val_top1"]
        add(
            "classifier accuracy",
            top1 >= g.min_val_top1,
            f"val top-1 {top1:.4f} (>= {g.min_val_top1})",
        )
        e2e = report["end_to_end"]
        add(
            "confidently wrong",
            e2e["confident_wrong_rate"] <= g.max_confident_wrong_rate,
            f"{e2e['confidently_wrong']} of {e2e['n_pills']} val pills "
            f"({100 * e2e['confident_wrong_rate']:.2f} %) named wrongly as identified "
            f"(<= {100 * g.max_confident_wrong_rate:.2f} %)",
        )
        for row in report["latency"].get("rows", []):
            status = row["status"]
            add(
                f"latency {row['profile']}/{row['case']}",
                None if status == "not run" else status == "pass",
                row["detail"],
            )
        return gates


def _best_ap50(run_dir: Path) -> float:
    """Validation mAP@0.5 of the epoch an Ultralytics run kept as ``best.pt`` (the epoch of
    highest fitness, 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95), from its ``results.csv``; -1 if none."""
    import csv

    path = run_dir / "results.csv"
    if not path.is_file():
        return -1.0
    with path.open(newline="") as fh:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(fh)]
    scored = [
        (0.1 * float(r["metrics/mAP50(B)"]) + 0.9 * float(r["metrics/mAP50-95(B)"]),
         float(r["metrics/mAP50(B)"]))
        for r in rows
        if r.get("metrics/mAP50(B)") and r.get("metrics/mAP50-95(B)")
    ]  # fmt: skip
    return max(scored)[1] if scored else -1.0


def _torch_logits(model: Any, x: F32) -> F32:
    import torch

    with torch.no_grad():
        outs = [model(torch.from_numpy(x[i : i + 64])).numpy() for i in range(0, len(x), 64)]
    return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)


def _load_yolo_module(weights: Path) -> Any:
    from .torch_compat import ensure_torchvision

    ensure_torchvision()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    module: Any = YOLO(str(weights)).model
    return module.float().eval()


def run_release(
    cfg: ReleaseConfig,
    *,
    until: str = "package",
    force_steps: tuple[str, ...] = (),
    command: str = "",
    allow_config_change: bool = False,
    only: bool = False,
) -> dict[str, Any]:
    """Run the steps up to ``until`` (or just ``until`` with ``only``); return summaries.

    ``only`` lets independent steps run side by side (e.g. the detector trains while the
    classifier does); the step still needs its inputs from earlier steps.
    """
    if until not in STEPS:
        raise ValueError(f"unknown step {until!r}; choose from {STEPS}")
    rel = Release(cfg, command=command, allow_config_change=allow_config_change)
    for s in force_steps:
        (rel.steps_dir / f"{s}.json").unlink(missing_ok=True)
    fns: dict[str, Callable[[], dict[str, Any]]] = {
        "ingest": rel.ingest,
        "train-classifier": rel.train_classifier,
        "train-detector": rel.train_detector,
        "export": rel.export,
        "calibrate": rel.calibrate,
        "variants": rel.variants,
        "package": rel.package,
    }
    results = {}
    todo = [until] if only else STEPS[: STEPS.index(until) + 1]
    eta = ReleaseEta(
        todo,
        already_done=[s for s in todo if rel.done(s) is not None],
        parallel=cfg.parallel_training,
    )
    side: Any = None
    for s in todo:
        if (
            s == "train-classifier"
            and cfg.parallel_training
            and "train-detector" in todo
            and rel.done("train-detector") is None
        ):
            side = _start_detector_process(cfg, allow_config_change)
        if s == "train-detector" and side is not None:
            side.join()
            if side.exitcode != 0:
                raise GateFailure(f"detector training process failed (exit {side.exitcode})")
        ran = rel.done(s) is None  # after the join: the side process may have done it
        if ran:
            _log(eta.line(s))
        else:
            eta.skip(s)
        results[s] = rel.step(s, fns[s])
        if ran:
            eta.finished(s, float(results[s].get("seconds", 0.0)))
    return results


def _train_detector_only(cfg_json: str, allow_config_change: bool) -> None:
    import os

    cfg = ReleaseConfig.model_validate_json(cfg_json)
    log = Path(cfg.work_dir) / "detector" / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # two trainers on one terminal interleave unreadably
    os.dup2(fd, 2)
    run_release(cfg, until="train-detector", only=True, allow_config_change=allow_config_change)


def _start_detector_process(cfg: ReleaseConfig, allow_config_change: bool) -> Any:
    """Train the detector in a spawned process while this one trains the classifier.

    Its log goes to ``work_dir/detector/train.log``; the parent waits for it before the
    ``train-detector`` step, which then finds the step marker the child wrote.
    """
    import multiprocessing

    _log("train-detector: running in a side process (parallel_training); log in detector/")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_train_detector_only,
        args=(cfg.model_dump_json(), allow_config_change),
        name="pillsnap-train-detector",
    )
    proc.start()
    return proc
