"""Inception feature throughput (images/s): automod's FID Inception vs pytorch-fid's, same images, same device.

Both networks get the same RANDOM weights (throughput does not depend on the weights; no download
needed). Images are uint8 256x256, resized to 299 inside each network, as in an FID run.
Usage: python benchmarks/bench_fid.py [--device cuda] [--batch 50] [--images 200]
"""

from __future__ import annotations

import argparse
import time

import torch

from machine import describe  # benchmarks/ is the script's folder, so on sys.path


def throughput(fn, images: torch.Tensor, batch: int, device: torch.device) -> float:
    with torch.no_grad():
        fn(images[:batch].to(device))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            fn(images[i:i + batch].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)

    import pytorch_fid.inception as pfi

    from automod_cli.metrics.fid import FeatureExtractor
    from automod_cli.metrics.inception import FIDInception

    torch.manual_seed(0)
    state = FIDInception().state_dict()
    pfi.load_state_dict_from_url = lambda *a, **k: state  # same random weights, no download
    theirs = pfi.InceptionV3([3]).to(device).eval()
    ours = FeatureExtractor(FIDInception(), None, device)
    ours.net.load_state_dict(state)
    images = torch.randint(0, 256, (args.images, 3, 256, 256), dtype=torch.uint8)

    print(f"machine: {describe()}")
    print(f"device {device}, batch {args.batch}, {args.images} images of 256x256 uint8, RANDOM weights")
    ours_rate = throughput(ours.features, images, args.batch, device)
    theirs_rate = throughput(lambda x: theirs(x.float() / 255)[0], images, args.batch, device)
    print(f"automod FID Inception : {ours_rate:8.1f} images/s (float32, TF32 off, float64 features)")
    print(f"pytorch-fid 0.3.0     : {theirs_rate:8.1f} images/s (default torch settings)")


if __name__ == "__main__":
    main()
