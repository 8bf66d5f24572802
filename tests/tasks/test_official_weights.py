# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Official GeoLink files (official layouts) in the tasks; checkpoints reload alone."""

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader

from tests.tasks.batch_testing import BatchList, make_batch
from torchgeo_geolink.errors import TagEncoderMismatchError
from torchgeo_geolink.models import (
    IMAGENET_MEAN,
    OFFICIAL_TAG_ENCODER,
    GeoLink,
    export_vit,
    save_official_checkpoint,
)
from torchgeo_geolink.tasks import GeoLinkPretrain, GeoLinkSegmentation

VIT = 'vit_tiny_patch16_224'
SEG: dict[str, Any] = {
    'num_classes': 4,
    'decoder_channels': 16,
    'output_layers': [2, 5, 8, 11],
}
HASHING = 'hashing-v1:dim512:h2:s1'


class Batches(LightningDataModule):
    """Synthetic batches with the tag encoder identity a GeoLink datamodule reports."""

    def __init__(self, tag_encoder_identity: str | None) -> None:
        super().__init__()
        self.tag_encoder_identity = tag_encoder_identity

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(BatchList(1, batch_size=2), batch_size=None)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(BatchList(1, batch_size=2, seed=9), batch_size=None)


def fit(task: Any, tmp_path: Path, identity: str | None = OFFICIAL_TAG_ENCODER) -> Path:
    """One training and one validation batch; returns the checkpoint written then."""
    trainer = Trainer(
        accelerator='cpu',
        fast_dev_run=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=Batches(identity))
    path = tmp_path / f'{type(task).__name__}.ckpt'
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def multimodal(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / 'geolink_multimodal.pth'
    save_official_checkpoint(
        GeoLink(VIT, img_size=32, legacy=True), path, gat_naming='lin_src'
    )
    return path


@pytest.fixture
def vit(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    path = tmp_path / 'geolink_vit.pth'
    export_vit(GeoLink(VIT, img_size=32), path)
    return path


def test_official_file_implies_the_settings(multimodal: Path) -> None:
    task = GeoLinkSegmentation(weights=str(multimodal), **SEG)
    hp = task.hparams
    assert hp['legacy'] and task.model.encoder.model.legacy
    assert hp['model'] == VIT and hp['img_size'] == 32
    assert hp['mean'] == list(IMAGENET_MEAN)
    assert task.provenance is not None
    assert task.provenance.tag_encoder == OFFICIAL_TAG_ENCODER
    with pytest.warns(UserWarning, match='trained with legacy=True'):
        explicit = GeoLinkSegmentation(weights=str(multimodal), legacy=False, **SEG)
    assert not explicit.model.encoder.model.legacy


def test_image_only_file_in_segmentation(vit: Path) -> None:
    task = GeoLinkSegmentation(weights=str(vit), multimodal=False, **SEG)
    state = torch.load(vit, weights_only=True)['model_state_dict']
    geolink = task.model.encoder.model
    assert torch.equal(geolink.cls_token, state['cls_token'])
    assert torch.equal(geolink.img_norm.weight, state['norm.weight'])
    assert torch.equal(
        geolink.img_encoder.blocks[3].attn.qkv.weight, state['blocks.3.attn.qkv.weight']
    )
    images = make_batch(2)['image']
    with torch.no_grad():
        assert task.eval()(images).shape == (2, 4, 32, 32)
    with pytest.warns(UserWarning, match='image branch only'):
        GeoLinkSegmentation(weights=str(vit), multimodal=True, **SEG)


def test_tag_encoder_mismatch_refused(multimodal: Path, tmp_path: Path) -> None:
    task = GeoLinkSegmentation(weights=str(multimodal), freeze_backbone=True, **SEG)
    with pytest.raises(TagEncoderMismatchError, match='allow_tag_encoder_mismatch'):
        fit(task, tmp_path, HASHING)
    # image only: the OSM inputs are not used, nothing to refuse
    fit(
        GeoLinkSegmentation(weights=str(multimodal), multimodal=False, **SEG),
        tmp_path,
        HASHING,
    )
    allowed = GeoLinkSegmentation(
        weights=str(multimodal), allow_tag_encoder_mismatch=True, **SEG
    )
    with pytest.warns(UserWarning, match='meaningless'):
        path = fit(allowed, tmp_path, HASHING)
    # the checkpoint names the encoder its OSM branch was then trained with
    assert (
        torch.load(path, weights_only=False)['geolink_provenance']['tag_encoder']
        == HASHING
    )


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_every_checkpoint_reloads_alone(
    multimodal: Path, vit: Path, tmp_path: Path
) -> None:
    seed_everything(0)
    pretrain = GeoLinkPretrain(model=VIT, img_size=32, osm_hidden_channels=16)
    pretrain_ckpt = fit(pretrain, tmp_path / 'pretrain', identity=HASHING)
    reloaded = GeoLinkPretrain.load_from_checkpoint(pretrain_ckpt)
    _same_state(pretrain, reloaded)
    provenance = torch.load(pretrain_ckpt, weights_only=False)['geolink_provenance']
    assert provenance['tag_encoder'] == HASHING and provenance['osm_trained']
    cases: dict[str, tuple[dict[str, Any], str]] = {
        'from_pretraining': ({'weights': str(pretrain_ckpt)}, HASHING),
        'official_multimodal': ({'weights': str(multimodal)}, OFFICIAL_TAG_ENCODER),
        'official_vit': ({'weights': str(vit), 'multimodal': False}, HASHING),
    }
    batch = make_batch(2, seed=4)
    for name, (kwargs, identity) in cases.items():
        task = GeoLinkSegmentation(**kwargs, **SEG)
        path = fit(task, tmp_path / name, identity)
        again = GeoLinkSegmentation.load_from_checkpoint(path)
        _same_state(task, again)
        assert again.hparams['legacy'] == task.hparams['legacy'], name
        with torch.no_grad():
            expected = task.eval()(batch['image'], batch['graph'])
            assert torch.equal(
                again.eval()(batch['image'], batch['graph']), expected
            ), name
    # the architecture came from the pretraining checkpoint, not from the defaults
    from_pretraining = GeoLinkSegmentation.load_from_checkpoint(
        tmp_path / 'from_pretraining' / 'GeoLinkSegmentation.ckpt'
    )
    assert from_pretraining.hparams['architecture']['osm_hidden_channels'] == 16
    assert from_pretraining.provenance is not None
    assert from_pretraining.provenance.tag_encoder == HASHING


def test_pretrain_takes_the_official_numerics(multimodal: Path, vit: Path) -> None:
    task = GeoLinkPretrain(model=VIT, img_size=32, weights=str(multimodal))
    assert task.hparams['legacy'] and task.model.legacy
    assert task.provenance is not None and task.provenance.osm_trained
    assert task.hparams['mean'] == list(IMAGENET_MEAN)
    with pytest.warns(UserWarning, match='trained with legacy=True'):
        image_only = GeoLinkPretrain(
            model=VIT, img_size=32, weights=str(vit), legacy=False
        )
    assert not image_only.model.legacy
    assert image_only.provenance is not None and not image_only.provenance.osm_trained
