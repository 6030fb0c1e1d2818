"""Seconds per classifier training step, NCHW vs channels-last (NHWC), on this CPU.

    python scripts/train_step_speed.py [--threads N] [--backbone NAME] [--size PX] [--batch B]

One AdamW step (forward, loss, backward, update) of a randomly initialised timm backbone
on a random batch, repeated; the first steps (allocator and kernel warm-up) are dropped
and the median of the rest printed. Used for docs/accuracy-2.0.md ("Faster classifier
steps"): why `pillsnap_train.classifier.train` trains in channels-last.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pillsnap_train.torch_compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402

from pillsnap_train.classifier.model import create_classifier  # noqa: E402


def step_seconds(channels_last: bool, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = create_classifier(args.backbone, 17, pretrained=False)
    x = torch.randn(args.batch, 3, args.size, args.size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 17, (args.batch,))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    times = []
    for _ in range(args.warmup + args.steps):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[args.warmup :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nchw, nhwc = step_seconds(False, args), step_seconds(True, args)
    print(
        f"{args.backbone} {args.size}px batch {args.batch}, {args.threads} thread(s): "
        f"NCHW {nchw:.2f} s/step, channels-last {nhwc:.2f} s/step ({nchw / nhwc:.2f}x)"
    )


if __name__ == "__main__":
    main()
