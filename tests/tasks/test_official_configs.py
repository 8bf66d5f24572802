# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The two official-weights YAMLs via TorchGeo's CLI, on official-layout weights."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torchgeo.main import main

from tests.conftest import write_tiles
from torchgeo_geolink.models import GeoLink, save_official_checkpoint
from torchgeo_geolink.tasks import GeoLinkPretrain, GeoLinkSegmentation

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ['geolink_ufz_official.yaml', 'geolink_finetune_official.yaml']
#: A small ViT in place of ViT-L (the official architecture name is read from the file).
VIT = 'vit_tiny_patch16_224'


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / 'geolink_mutimodal_vit_tiny.pth'
    save_official_checkpoint(
        GeoLink(VIT, img_size=32, legacy=True), path, gat_naming='lin_src'
    )
    return path


@pytest.fixture
def tiles(tmp_path: Path) -> Path:
    """Four 32 x 32 UFZ-style tiles (raw labels 0, 1, 5, 9, 255), official graphs."""
    root = tmp_path / 'ufz'
    write_tiles(root, [f't{i}' for i in range(4)], size=32)
    return root


@pytest.fixture
def clip_folder(tmp_path: Path) -> Path:
    """A tiny random CLIP text model of width 512, named as the official tag encoder."""
    transformers = pytest.importorskip('transformers')
    chars = [chr(c) for c in range(33, 127)]
    tokens = [*chars, *(c + '</w>' for c in chars), '<|startoftext|>', '<|endoftext|>']
    tokenizer = transformers.CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=[]
    )
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokens),
        hidden_size=512,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=8,
        max_position_embeddings=40,
        bos_token_id=len(tokens) - 2,
        eos_token_id=len(tokens) - 1,
        pad_token_id=len(tokens) - 1,
    )
    torch.manual_seed(0)
    path = tmp_path / 'clip-vit-base-patch16'
    transformers.CLIPTextModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def own_data(tmp_path: Path, city_raster: Path, city_gpkg: Path) -> list[str]:
    with rasterio.open(city_raster) as src:
        profile = src.profile | {'count': 1, 'dtype': 'uint8'}
        height, width = src.height, src.width
        transform = src.transform
    assert transform == from_origin(transform.c, transform.f, 1.0, 1.0)
    labels = np.random.default_rng(0).integers(0, 2, (1, height, width), dtype=np.uint8)
    with rasterio.open(tmp_path / 'labels.tif', 'w', **profile) as dst:
        dst.write(labels)
    return [
        '--data.init_args.image_paths', str(city_raster),
        '--data.init_args.osm_paths', str(city_gpkg),
        '--data.init_args.label_paths', str(tmp_path / 'labels.tif'),
        '--data.init_args.patch_size', '32',
        '--data.init_args.length', '4',
        '--data.init_args.tag_cache_dir', str(tmp_path / 'tags'),
    ]  # fmt: skip


@pytest.mark.parametrize('config', CONFIGS)
def test_official_config_prints(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(['fit', '--config', str(REPO / config), '--print_config'])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert 'class_path: torchgeo_geolink.tasks.GeoLinkSegmentation' in printed
    assert 'geolink_mutimodal_vit_large_patch16_224.pth' in printed
    assert 'freeze_backbone: true' in printed or 'freeze_backbone: false' in printed


def run(
    config: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main([
        'fit', '--config', str(REPO / config), *args,
        '--trainer.accelerator', 'cpu', '--trainer.fast_dev_run', 'true',
        '--trainer.enable_progress_bar', 'false', '--trainer.default_root_dir', str(tmp_path),
        '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
        '--model.init_args.decoder_channels', '16',
    ])  # fmt: skip


def test_ufz_official_fast_dev_run(
    weights: Path, tiles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [
        '--model.init_args.weights', str(weights),
        '--data.init_args.root', str(tiles),
        '--data.init_args.size', '32',
    ]  # fmt: skip
    run('geolink_ufz_official.yaml', args, tmp_path, monkeypatch)
    # the frozen official encoder runs with the numerics the file implies
    task = GeoLinkSegmentation(weights=str(weights), num_classes=9, decoder_channels=16)
    assert task.hparams['legacy']


def test_finetune_official_fast_dev_run(
    weights: Path,
    own_data: list[str],
    clip_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = [
        *own_data,
        '--model.init_args.weights', str(weights),
        '--data.init_args.tag_encoder_model', str(clip_folder),
    ]  # fmt: skip
    run('geolink_finetune_official.yaml', args, tmp_path, monkeypatch)


def fit_one_step(
    config: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One training and one validation batch with the YAML's callbacks (checkpoints)."""
    monkeypatch.chdir(tmp_path)
    main([
        'fit', '--config', str(REPO / config), *args,
        '--trainer.accelerator', 'cpu', '--trainer.max_epochs', '1',
        '--trainer.limit_train_batches', '1', '--trainer.limit_val_batches', '1',
        '--trainer.enable_progress_bar', 'false',
        '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
    ])  # fmt: skip


def test_every_shipped_config_checkpoint_reloads_alone(
    weights: Path,
    tiles: Path,
    own_data: list[str],
    clip_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the demo chain, on the synthetic city: pretraining, then segmentation from its
    # last.ckpt (relative path)
    city = [
        *own_data[:6],
        '--data.init_args.length', '2',
        '--data.init_args.val_fraction', '0.4',
        '--data.init_args.test_fraction', '0.0',
    ]  # fmt: skip
    fit_one_step('geolink_pretrain.yaml', city, tmp_path, monkeypatch)
    pretrain_ckpt = tmp_path / 'lightning_logs/pretrain/checkpoints/last.ckpt'
    pretrain = GeoLinkPretrain.load_from_checkpoint(pretrain_ckpt)
    assert pretrain.hparams['img_size'] == 64 and pretrain.provenance is not None
    fit_one_step(
        'geolink_segmentation.yaml',
        [*city, '--data.init_args.demo_labels', 'false'],
        tmp_path,
        monkeypatch,
    )
    cases = {
        'segmentation': ('geolink_segmentation.yaml', None),
        'ufz_official': (
            'geolink_ufz_official.yaml',
            [
                '--model.init_args.weights', str(weights),
                '--data.init_args.root', str(tiles), '--data.init_args.size', '32',
                '--model.init_args.decoder_channels', '16',
            ],
        ),
        'finetune_official': (
            'geolink_finetune_official.yaml',
            [
                *own_data,
                '--model.init_args.weights', str(weights),
                '--data.init_args.tag_encoder_model', str(clip_folder),
                '--model.init_args.decoder_channels', '16',
            ],
        ),
    }  # fmt: skip
    for name, (config, args) in cases.items():
        if args is not None:
            fit_one_step(config, args, tmp_path, monkeypatch)
        path = tmp_path / 'lightning_logs' / name / 'checkpoints' / 'last.ckpt'
        task = GeoLinkSegmentation.load_from_checkpoint(path)
        saved = torch.load(path, weights_only=False)
        for key, value in saved['state_dict'].items():
            assert torch.equal(task.state_dict()[key], value), (name, key)
        provenance = saved['geolink_provenance']
        assert provenance['architecture']['model'] == task.hparams['model'], name
        if name != 'segmentation':
            assert task.hparams['legacy'] and provenance['legacy'], name
            assert provenance['mean'] == [123.675, 116.28, 103.53], name
