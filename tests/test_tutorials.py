# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Run the documentation's jupytext tutorials end to end and check their output."""

import runpy
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, HeteroData

TUTORIALS = Path(__file__).resolve().parents[1] / 'docs' / 'tutorials'

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run_tutorial(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', [f'{name}.py'])
    monkeypatch.setattr(plt, 'show', lambda *args, **kwargs: None)
    try:
        return runpy.run_path(str(TUTORIALS / f'{name}.py'), run_name='__main__')
    finally:
        plt.close('all')


def test_every_tutorial_is_tested_and_rendered() -> None:
    scripts = sorted(p.stem for p in TUTORIALS.glob('[0-9]*.py'))
    tested = sorted(
        name.removeprefix('test_') for name in globals() if name.startswith('test_0')
    )
    assert scripts == [
        '01_custom_data',
        '02_pretraining',
        '03_embeddings_segmentation',
        '04_attention',
    ]
    assert [s.split('_')[0] for s in scripts] == [t.split('_')[0] for t in tested]
    for script in scripts:
        stub = TUTORIALS / f'{script}.md'
        assert stub.read_text().strip() == f'<!-- jupytext: {script}.py -->'
        assert script in (TUTORIALS / 'index.rst').read_text()


def test_01_custom_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_tutorial('01_custom_data', tmp_path, monkeypatch)
    graph = ns['graph']
    assert isinstance(graph, HeteroData)
    assert sum(graph[t].num_nodes for t in ('polygon', 'line', 'point')) > 0
    assert ns['sample']['image'].shape[-2:] == (224, 224)
    batch = ns['batch']
    assert isinstance(batch['graph'], Batch)
    assert batch['graph'].num_graphs == batch['image'].shape[0] == 4


def test_02_pretraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_tutorial('02_pretraining', tmp_path, monkeypatch)
    assert ns['checkpoint'].exists()
    assert ns['losses']
    values = ns['metrics'][ns['losses']].to_numpy(dtype=float).ravel()
    logged = values[~np.isnan(values)]
    assert logged.size >= 2  # at least one step and the epoch mean
    assert np.isfinite(logged).all()


def test_03_embeddings_segmentation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_tutorial('03_embeddings_segmentation', tmp_path, monkeypatch)
    fused, unimodal = ns['fused_maps'][-1], ns['unimodal']
    assert fused.shape[-2:] == unimodal.shape[-2:] == (4, 4)
    assert fused.shape[1] == ns['model'].fusion_embed_dim
    logits = ns['logits']
    assert logits.shape == (4, len(ns['DEMO_CLASSES']), 64, 64)
    assert torch.isfinite(logits).all()


def test_04_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_tutorial('04_attention', tmp_path, monkeypatch)
    attention, tokens = ns['attention'], ns['tokens']
    assert attention.shape[0] == 2
    assert attention.shape[-1] == 16  # 4 x 4 patches of a 64 px window
    valid = tokens.valid
    # Each real OSM token's attention is a distribution over the patches.
    torch.testing.assert_close(attention[valid].sum(-1), torch.ones(int(valid.sum())))
    assert len(ns['labels']) == len(ns['positions']) == int(valid[0].sum())
    assert ns['positions'].min() >= 0
    assert ns['positions'].max() <= 1
