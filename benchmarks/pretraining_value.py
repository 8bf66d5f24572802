# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The paper's ablation in miniature: does OSM in pretraining help the image encoder?

With one compute budget (the demo pretraining of ``geolink_pretrain.yaml``) and several
seeds, three encoders are compared on the demo's held-out region (the validation strip,
never seen in pretraining):

1. ``random``: the untrained model (random initialization, same architecture);
2. ``mae``: pretrained with the image reconstruction loss only
   (``cont_weight = node_weight = 0``);
3. ``geolink``: pretrained with the three GeoLink objectives.

Each frozen encoder is evaluated with (a) a land-use linear probe and a weighted kNN on
the pooled image embedding (target: the dominant class of the demo label raster in each
window), (b) segmentation with a frozen encoder and a trained UPerNet head (mIoU), and
for ``geolink`` also (c) segmentation on the fused image + OSM embeddings, with the OSM
keys that define the labels withheld from the graphs. Evaluation settings are fixed
here, before any result; the script prints a table of mean +- std over the seeds and
ends with the line ``pretraining value: geolink - mae linear probe: +X points (std Y)``
(percentage points of overall accuracy, std of the per-seed differences).

Usage::

    python benchmarks/pretraining_value.py            # 3 seeds, the YAML's pretraining budget
    python benchmarks/pretraining_value.py --quick    # 1 seed, 1 pretraining epoch: checks that it runs
"""

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch import seed_everything as seed_all

from torchgeo_geolink.datamodules import GeoLinkDataModule, dominant_class
from torchgeo_geolink.datasets import DEMO_CLASSES, DEMO_WITHHELD_KEYS
from torchgeo_geolink.tasks import (
    GeoLinkClassification,
    GeoLinkPretrain,
    GeoLinkSegmentation,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table

REPO = Path(__file__).resolve().parents[1]
METHODS = ('random', 'mae', 'geolink')
#: Evaluation budget, fixed for every encoder.
PROBE_EPOCHS = 3
SEGMENTATION_EPOCHS = 2
#: Training windows per epoch of the evaluation heads.
EVAL_WINDOWS = 384


def demo_config() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Read the task, datamodule and trainer settings of ``geolink_pretrain.yaml``.

    Returns:
        The task's and the datamodule's ``init_args`` and the trainer settings.
    """
    config = yaml.safe_load((REPO / 'geolink_pretrain.yaml').read_text())
    return (
        dict(config['model']['init_args']),
        dict(config['data']['init_args']),
        dict(config['trainer']),
    )


def trainer(epochs: int, root: Path) -> Trainer:
    """A quiet CPU trainer.

    Args:
        epochs: Epochs to train.
        root: Folder for Lightning's files.

    Returns:
        The trainer.
    """
    return Trainer(
        accelerator='cpu',
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
        deterministic=True,
    )


def pretrain(
    method: str, seed: int, epochs: int, data_root: Path, out: Path
) -> tuple[Path, float]:
    """Pretrain (or just initialize) one encoder and save it as a Lightning checkpoint.

    Args:
        method: ``'random'``, ``'mae'`` or ``'geolink'``.
        seed: Seed of the initialization and the training run.
        epochs: Pretraining epochs (the same budget for both pretrained methods).
        data_root: Folder of the demo.
        out: Folder for the checkpoint.

    Returns:
        The checkpoint and the final ``val_retrieval_top1`` (NaN for ``random``, which
        is not validated).
    """
    model_args, data_args, _ = demo_config()
    model_args['baseline_validation'] = False
    if method == 'mae':
        model_args.update(cont_weight=0.0, node_weight=0.0)
    data_args.update(root=str(data_root), seed=seed)
    seed_all(seed, workers=True)
    task = GeoLinkPretrain(**model_args)
    run = trainer(0 if method == 'random' else epochs, out)
    datamodule = GeoLinkDataModule(**data_args)
    run.fit(task, datamodule=datamodule)
    path = out / f'{method}-{seed}.ckpt'
    run.save_checkpoint(path)
    top1 = float('nan')
    if method != 'random':
        metrics = run.validate(task, datamodule=datamodule, verbose=False)
        top1 = float(metrics[0]['val_retrieval_top1'])
    return path, top1


def evaluate(
    task: LightningModule, datamodule: LightningDataModule, epochs: int, root: Path
) -> dict[str, float]:
    """Fit an evaluation task and validate it on the held-out region.

    Args:
        task: The evaluation task (frozen encoder).
        datamodule: Its datamodule.
        epochs: Training epochs of the head.
        root: Folder for Lightning's files.

    Returns:
        The validation metrics.
    """
    run = trainer(epochs, root)
    run.fit(task, datamodule=datamodule)
    return {
        k: float(v)
        for k, v in run.validate(task, datamodule=datamodule, verbose=False)[0].items()
    }


def label_data(data_root: Path, seed: int, **kwargs: Any) -> GeoLinkDataModule:
    """The demo with its land-use labels, split by region like the pretraining.

    Args:
        data_root: Folder of the demo.
        seed: Seed of the training windows.
        **kwargs: Other datamodule arguments.

    Returns:
        The datamodule.
    """
    _, data_args, _ = demo_config()
    args = {
        k: v
        for k, v in data_args.items()
        if k
        in {
            'patch_size',
            'batch_size',
            'length',
            'val_fraction',
            'test_fraction',
            'min_features',
            'demo_regions',
        }
    }
    args.update(root=str(data_root), demo_labels=True, seed=seed, length=EVAL_WINDOWS)
    args.update(kwargs)
    return GeoLinkDataModule(**args)


def evaluate_encoder(
    checkpoint: Path, method: str, seed: int, data_root: Path, root: Path
) -> dict[str, float]:
    """All evaluations of one frozen encoder.

    Args:
        checkpoint: The encoder's checkpoint.
        method: Its pretraining method (``geolink`` also gets the fused segmentation).
        seed: Seed of the evaluation runs.
        data_root: Folder of the demo.
        root: Folder for Lightning's files.

    Returns:
        ``linear``, ``knn`` (overall accuracy, %), ``seg`` and, for ``geolink``,
        ``seg_fused`` (mIoU, %).
    """
    n = len(DEMO_CLASSES)
    out: dict[str, float] = {}
    seed_all(seed, workers=True)
    linear = GeoLinkClassification(
        weights=str(checkpoint), mode='linear', num_classes=n, lr=1e-2
    )
    metrics = evaluate(
        linear, label_data(data_root, seed, target='dominant_class'), PROBE_EPOCHS, root
    )
    out['linear'] = 100 * metrics['val_OverallAccuracy']
    seed_all(seed, workers=True)
    knn = GeoLinkClassification(weights=str(checkpoint), mode='knn', num_classes=n)
    metrics = evaluate(
        knn,
        label_data(data_root, seed, target='dominant_class', augment=False),
        1,
        root,
    )
    out['knn'] = 100 * metrics['val_OverallAccuracy']
    for key, multimodal in (('seg', False), ('seg_fused', True)):
        if multimodal and method != 'geolink':
            continue
        seed_all(seed, workers=True)
        segmentation = GeoLinkSegmentation(
            weights=str(checkpoint),
            multimodal=multimodal,
            freeze_backbone=True,
            num_classes=n,
            decoder_channels=64,
            lr=5e-4,
        )
        metrics = evaluate(
            segmentation,
            label_data(data_root, seed, drop_osm_keys=DEMO_WITHHELD_KEYS),
            SEGMENTATION_EPOCHS,
            root,
        )
        out[key] = 100 * metrics['val_AverageJaccardIndex']
    return out


def majority_baseline(data_root: Path) -> float:
    """Accuracy (%) of always predicting the most frequent training class (validation).

    Args:
        data_root: Folder of the demo.

    Returns:
        The accuracy.
    """
    datamodule = label_data(data_root, 0, target='dominant_class', augment=False)
    datamodule.setup('fit')
    counts: dict[str, torch.Tensor] = {}
    for stage, loader in (
        ('train', datamodule.train_dataloader()),
        ('val', datamodule.val_dataloader()),
    ):
        labels = torch.cat([dominant_class(batch['mask']) for batch in loader])
        counts[stage] = torch.bincount(labels, minlength=len(DEMO_CLASSES))
    majority = int(counts['train'].argmax())
    return float(100 * counts['val'][majority] / counts['val'].sum())


def mean_std(values: list[float]) -> str:
    """Format mean +- std.

    Args:
        values: One value per seed.

    Returns:
        ``'m +- s'`` (std 0 for one value).
    """
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.fmean(values):.1f} +- {std:.1f}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument(
        '--epochs',
        type=int,
        default=None,
        help="pretraining epochs (default: the YAML's max_epochs)",
    )
    parser.add_argument(
        '--quick', action='store_true', help='1 seed, 1 epoch: checks that it runs'
    )
    parser.add_argument('--data-root', default=str(REPO / 'data' / 'geolink_demo'))
    parser.add_argument(
        '--seed', type=int, default=None, help='run this one seed only (see --json)'
    )
    parser.add_argument(
        '--json', default=None, help='also write the per-seed results to this file'
    )
    parser.add_argument(
        '--combine',
        nargs='+',
        default=None,
        help='print the table of results written by earlier --json runs (one seed each, e.g. run in parallel)',
    )
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    _, _, trainer_args = demo_config()
    epochs = args.epochs or int(trainer_args['max_epochs'])
    seeds = list(range(args.seeds)) if args.seed is None else [args.seed]
    if args.quick:
        seeds, epochs = [0], 1
    global PROBE_EPOCHS, SEGMENTATION_EPOCHS
    if args.quick:
        PROBE_EPOCHS, SEGMENTATION_EPOCHS = 1, 1
    torch.set_num_threads(max(1, torch.get_num_threads()))
    header('pretraining value (ablation in miniature)')
    settings = {
        'pretraining_epochs': epochs,
        'probe_epochs': PROBE_EPOCHS,
        'segmentation_epochs': SEGMENTATION_EPOCHS,
        'eval_windows': EVAL_WINDOWS,
    }
    data_root = Path(args.data_root)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    start = time.perf_counter()
    if args.combine:
        seconds = 0.0
        for path in args.combine:
            saved = json.loads(Path(path).read_text())
            for method in METHODS:
                results[method].extend(saved['results'][method])
            seconds = max(seconds, saved['seconds'])
            print(
                f'{path}: seeds {saved["seeds"]}, {saved["settings"]}, {saved["seconds"]:.0f} s'
            )
        report(results, data_root, seconds)
        return
    print(f'seeds {seeds}, {settings}\n')
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in seeds:
            for method in METHODS:
                t0 = time.perf_counter()
                checkpoint, top1 = pretrain(method, seed, epochs, data_root, root)
                scores = evaluate_encoder(checkpoint, method, seed, data_root, root)
                scores['retrieval'] = 100 * top1
                results[method].append(scores)
                print(
                    f'seed {seed} {method:8s} '
                    + ' '.join(f'{k} {v:.1f}' for k, v in scores.items())
                    + f' ({time.perf_counter() - t0:.0f} s)',
                    flush=True,
                )
    seconds = time.perf_counter() - start
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    'seeds': seeds,
                    'settings': settings,
                    'seconds': seconds,
                    'results': results,
                }
            )
        )
    report(results, data_root, seconds)


def report(
    results: dict[str, list[dict[str, float]]], data_root: Path, seconds: float
) -> None:
    """Print the table of mean +- std over the seeds and the closing line.

    Args:
        results: Per method, one dict of scores per seed.
        data_root: Folder of the demo (for the majority-class baseline).
        seconds: Run time to report (of the longest run when seeds ran in parallel).
    """
    majority = majority_baseline(data_root)
    columns = ('linear', 'knn', 'seg', 'seg_fused', 'retrieval')
    rows = []
    for method in METHODS:
        row: list[object] = [method]
        for column in columns:
            values = [r[column] for r in results[method] if column in r]
            values = [v for v in values if not math.isnan(v)]
            row.append(mean_std(values) if values else '-')
        rows.append(row)
    print()
    print_table(
        rows,
        [
            'encoder',
            'linear probe OA %',
            'kNN OA %',
            'frozen seg mIoU %',
            'fused seg mIoU %',
            'val retrieval top-1 %',
        ],
    )
    print(
        f'\nmajority-class overall accuracy on the held-out windows: {majority:.1f} %'
    )
    print(f'total time: {seconds:.0f} s')
    diffs = [
        g['linear'] - m['linear']
        for g, m in zip(results['geolink'], results['mae'], strict=True)
    ]
    std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    print(
        f'pretraining value: geolink - mae linear probe: {statistics.fmean(diffs):+.1f} points (std {std:.1f})'
    )


if __name__ == '__main__':
    main()
