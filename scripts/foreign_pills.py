"""Pills of *other* drugs, on other phones and tables: how many does a bundle name as one of
its own?

Why: the open-set experiment (``configs/experiments/open-set-3-soup.yaml``) holds three
known drugs out of training, a small in-house proxy. The detector-only photos
(``data.detector_sources``: pillcounter, other phones and tables) show pills that are none
of the bundle's drugs, so on them every ``identified`` answer is a wrong drug name. They
never train the classifier (their licence note: "use them for detection, never for the
classifier"); here only their *validation* photos are looked at, through the SDK as a user
would, and nothing is fitted to them.

    python scripts/foreign_pills.py --config configs/pushin-pill-edge.yaml \
        --bundle models/pushin-pill-edge [--precision fp32]

Counts pills found (IoU >= 0.5 with a labelled box), how many of them came back
"identified" (a wrong name, by construction) or "unknown", and boxes on no labelled pill.
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from pillsnap_sdk import Identifier
from pillsnap_sdk.boxes import box_iou
from pillsnap_train.config import load_config
from pillsnap_train.release.data import ReleaseData

Photos = dict[str, list[tuple[float, float, float, float]]]


def count(idf: Identifier, photos: Photos) -> dict[str, Any]:
    """Found / named / unknown pills and false boxes over ``photos`` (path -> boxes)."""
    c: collections.Counter[str] = collections.Counter()
    names: collections.Counter[str] = collections.Counter()
    for path, boxes in sorted(photos.items()):
        gt = np.array(boxes, np.float32).reshape(-1, 4)
        c["pills"] += len(gt)
        for p in idf.identify(path).pills:
            named = p.status == "identified"
            if p.bbox is None:  # whole-photo answer: no pill was boxed
                c["whole_photo_named" if named else "whole_photo_unknown"] += 1
            elif (
                len(gt)
                and float(box_iou(np.array([p.bbox.as_tuple()], np.float32), gt).max()) >= 0.5
            ):
                c["found"] += 1
                c["named" if named else "unknown"] += 1
            else:
                c["false_boxes"] += 1
                c["false_boxes_named"] += named
            if named and p.label is not None:
                names[p.label.name] += 1
    return {**c, "photos": len(photos), "named_as": dict(names.most_common())}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the release config (its work_dir is read)")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default=None, help="classifier variant, e.g. fp32 or int8")
    args = ap.parse_args(argv)
    data = ReleaseData(load_config(args.config))
    photos: Photos = collections.defaultdict(list)
    for r in data.detector_extra():
        if r.split == "val":
            photos[r.image_path].append((r.x1, r.y1, r.x2, r.y2))
    if not photos:
        print("no detector-only validation photos in this config's work dir (run ingest)")
        return 1
    idf = Identifier.from_bundle(args.bundle, precision=args.precision)
    out = count(idf, photos)
    m = idf.manifest
    out["bundle"] = f"{m.name}@{m.version}+{m.classifier.precision}"
    found = max(out.get("found", 0), 1)
    print(
        f"{out['bundle']}: {out['photos']} photos, {out['pills']} pills of other drugs; "
        f"found {out.get('found', 0)}, named as one of the bundle's drugs "
        f"{out.get('named', 0)} ({100 * out.get('named', 0) / found:.1f} % of found), "
        f"unknown {out.get('unknown', 0)}; false boxes {out.get('false_boxes', 0)} "
        f"(named {out.get('false_boxes_named', 0)})"
    )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
