# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Time one GeoLink training step against a bare MAE step in the same process.

The MAE baseline is the same model called without graphs: same ViT, batch, masking and
decoder. Synthetic OSM graphs have 100-400 nodes per sample (realistic tiles). Ends with
``geolink/mae step ratio: X``.

    python benchmarks/train_step.py            # CPU: ViT-S/16 at batch 32 and ViT-B/16
    at batch 8 python benchmarks/train_step.py --quick    # CPU: ViT-S/16 at batch 8
    python benchmarks/train_step.py --device cuda  # ViT-L/16, bf16 autocast, batch 256,
    samples/s and MFU
"""

import argparse
import statistics
import time
from contextlib import nullcontext
from typing import cast

import torch
from torch_geometric.data import Batch, HeteroData

from torchgeo_geolink.models import GeoLink
from torchgeo_geolink.osm import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS


def synthetic_graph(gen: torch.Generator, dim: int = 512) -> HeteroData:
    """A random graph of 100-400 nodes of three types, about 3 edges per node."""
    total = int(torch.randint(100, 401, (1,), generator=gen))
    share = torch.rand(3, generator=gen)
    counts = (share / share.sum() * total).long().tolist()
    data = HeteroData()
    for t, n in zip(NODE_TYPES, counts, strict=True):
        data[t].x = torch.randn(n, dim, generator=gen)
        data[t].pos = torch.rand(n, POS_POINTS[t], 2, generator=gen)
    for et in EDGE_TYPES:
        ns, nd = data[et[0]].num_nodes, data[et[2]].num_nodes
        e = 3 * nd if ns and nd else 0
        data[et].edge_index = torch.stack(
            [
                torch.randint(max(ns, 1), (e,), generator=gen),
                torch.randint(max(nd, 1), (e,), generator=gen),
            ]
        )
        data[et].edge_attr = torch.zeros(e, EDGE_ATTR_DIMS[et])
    return data


def vit_flops(model: GeoLink, batch: int) -> float:
    """Approximate model FLOPs of one training step (3x the forward matmul FLOPs)."""
    d, depth = model.embed_dim, len(cast(torch.nn.Sequential, model.img_encoder.blocks))
    keep = int(model.num_patches * (1 - model.img_mask_ratio)) + 1
    enc = depth * (24 * keep * d * d + 4 * keep * keep * d)
    dd = model.img_decoder_mlp.out_features
    full = model.num_patches + 1
    dec = len(model.img_cross_modal_decoder) * (
        24 * full * dd * dd + 4 * full * full * dd
    )
    return 3.0 * batch * (enc + dec)


def time_steps(
    model: GeoLink, images: torch.Tensor, graphs: Batch, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Time bare MAE steps and GeoLink steps, alternated to see the same machine state.

    Returns:
        The MAE and the GeoLink step times in seconds (warm-up steps excluded).
    """
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cuda = images.device.type == 'cuda'
    amp = torch.autocast('cuda', dtype=torch.bfloat16) if cuda else nullcontext()
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.warmup + args.steps):
        for with_osm in (False, True):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            if cuda and i >= args.warmup:
                torch.cuda.set_sync_debug_mode('error')
            with amp:
                out = model(images, graphs if with_osm else None)
            optim.zero_grad(set_to_none=True)
            out.loss.backward()
            optim.step()
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[with_osm].append(time.perf_counter() - start)
    return times[False], times[True]


def main() -> None:
    """Parse arguments, run the configurations and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--quick', action='store_true', help='small CPU settings')
    parser.add_argument('--steps', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == 'cuda':
        configs = [('vit_large_patch16_224', 256)]
        torch.backends.cuda.matmul.allow_tf32 = True
    elif args.quick:
        configs = [('vit_small_patch16_224', 8)]
    else:
        configs = [('vit_small_patch16_224', 32), ('vit_base_patch16_224', 8)]
    gen = torch.Generator().manual_seed(0)
    print(
        f'device {device}, threads {torch.get_num_threads()}, steps {args.steps} (median)'
    )
    print(
        f'{"model":24} {"batch":>5} {"nodes":>7} {"mae s":>8} {"geolink s":>10} {"ratio":>6} {"samples/s":>10} {"MFU":>6}'
    )
    ratios = []
    for name, batch in configs:
        torch.manual_seed(0)
        model = GeoLink(name).to(device).train()
        images = torch.randn(batch, 3, 224, 224, device=device)
        graphs = Batch.from_data_list([synthetic_graph(gen) for _ in range(batch)]).to(
            device
        )
        nodes = sum(graphs[t].num_nodes for t in NODE_TYPES)
        mae_times, geo_times = time_steps(model, images, graphs, args)
        t_mae, t_geo = statistics.median(mae_times), statistics.median(geo_times)
        ratio = t_geo / t_mae
        ratios.append(ratio)
        mfu = ''
        if device.type == 'cuda':
            peak = 989e12  # H100 dense bf16
            mfu = f'{vit_flops(model, batch) / t_geo / peak:.1%}'
        print(
            f'{name:24} {batch:>5} {nodes:>7} {t_mae:>8.3f} {t_geo:>10.3f} {ratio:>6.3f} {batch / t_geo:>10.1f} {mfu:>6}'
        )
        del model
    print(f'geolink/mae step ratio: {max(ratios):.3f}')


if __name__ == '__main__':
    main()
