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
"identified" (a wrong name, by construction) or "unknown", and boxes on no labelled pill;
the release reports the same numbers (``other_drugs`` in report.json, a model-card line).
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Sequence

from pillsnap_sdk import Identifier, IdentifyResult
from pillsnap_train.config import load_config
from pillsnap_train.evaluate import score_pipeline
from pillsnap_train.release.data import ReleaseData


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", required=True, help="the release config (its work_dir is read)")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default=None, help="classifier variant, e.g. fp32 or int8")
    args = ap.parse_args(argv)
    photos = ReleaseData(load_config(args.config)).foreign_images("val")
    if not photos:
        print("no detector-only validation photos in this config's work dir (run ingest)")
        return 1
    idf = Identifier.from_bundle(args.bundle, precision=args.precision)
    names: collections.Counter[str] = collections.Counter()

    def identify(path: str) -> IdentifyResult:
        res = idf.identify(path)
        names.update(p.label.name for p in res.pills if p.label is not None)
        return res

    s = score_pipeline(identify, photos)  # every pill is coded "(other drug)": named = wrong
    m = idf.manifest
    found = max(s.found, 1)
    print(
        f"{m.name}@{m.version}+{m.classifier.precision}: {len(photos)} photos, {s.n_pills} "
        f"pills of other drugs; found {s.found}, named as one of the bundle's drugs {s.wrong} "
        f"({100 * s.wrong / found:.1f} % of found), unknown {s.unknown}; false boxes "
        f"{s.false_positives}"
    )
    print(json.dumps({"named_as": dict(names.most_common())}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
