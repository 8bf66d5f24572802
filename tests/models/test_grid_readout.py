# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The grid contrastive readout: both modalities on the patch grid, cell by cell."""

import pytest
import torch

from tests.models.geolink_testing import batch_of, make_graph, tiny_geolink
from torchgeo_geolink.models import GeoLink
from torchgeo_geolink.models.graph_inputs import OSMInputs


@pytest.fixture
def grid_model() -> GeoLink:
    return tiny_geolink(contrastive_readout='grid').eval()


def test_global_readout_has_no_grid_parameters(model: GeoLink) -> None:
    # the paper's layout, so the official checkpoints load strictly
    assert not any('grid_prj' in name for name in model.state_dict())


def test_unknown_readout_is_rejected() -> None:
    with pytest.raises(
        ValueError, match="contrastive_readout must be 'global' or 'grid'"
    ):
        tiny_geolink(contrastive_readout='pooled')


def test_osm_node_lands_in_the_cell_of_its_position(grid_model: GeoLink) -> None:
    # one point node: moving it inside its cell keeps the layout, moving it to another
    # cell changes it
    def layout(x: float, y: float) -> torch.Tensor:
        h = {
            'polygon': torch.zeros(0, 16),
            'line': torch.zeros(0, 16),
            'point': torch.ones(1, 16),
        }
        inputs = OSMInputs(
            x={},
            pos={
                'polygon': torch.zeros(0, 4, 2),
                'line': torch.zeros(0, 3, 2),
                'point': torch.tensor([[[x, y]]]),
            },
            batch={t: torch.zeros(len(h[t]), dtype=torch.long) for t in h},
            edge_index={},
            edge_attr={},
            num_graphs=1,
        )
        return grid_model.grid_osm_embedding(h, inputs)

    # 4 x 4 grid: x = 0.30 and 0.45 are both in column 1 (0.25-0.5), 0.55 in column 2
    torch.testing.assert_close(layout(0.30, 0.1), layout(0.45, 0.2))
    assert not torch.allclose(layout(0.30, 0.1), layout(0.55, 0.1))
    # x right, y down: row 3 is the bottom row
    assert not torch.allclose(layout(0.30, 0.1), layout(0.30, 0.9))


def test_image_layout_is_spatially_ordered(grid_model: GeoLink) -> None:
    tokens = torch.randn(1, 16, 64)
    swapped = tokens[:, torch.tensor([1, 0, *range(2, 16)])]
    first = grid_model.grid_image_embedding(tokens)
    assert not torch.allclose(first, grid_model.grid_image_embedding(swapped))
    assert torch.allclose(first.norm(dim=-1), torch.ones(1))


def test_embedding_entry_points_use_the_grid(grid_model: GeoLink) -> None:
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((3, 2, 4), seed=1), make_graph((1, 5, 2), seed=2))
    out = grid_model.embed(images, graphs)
    tokens = grid_model.patch_tokens(images)
    torch.testing.assert_close(
        out.image_projected, grid_model.grid_image_embedding(tokens)
    )
    torch.testing.assert_close(
        out.image_projected, grid_model.image_embedding(images, project=True)
    )
    torch.testing.assert_close(
        out.osm_projected, grid_model.osm_embedding(graphs, 2, project=True)
    )
    assert out.image_projected.shape == out.osm_projected.shape == (2, 8)


def test_grid_training_step_trains_the_grid_projections(grid_model: GeoLink) -> None:
    grid_model.train()
    images = torch.randn(3, 3, 64, 64)
    graphs = batch_of(*(make_graph((2, 3, 4), seed=s) for s in range(3)))
    out = grid_model(images, graphs, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and out.loss_cont > 0
    out.loss.backward()
    assert grid_model.img_grid_prj is not None and grid_model.osm_grid_prj is not None
    assert grid_model.img_grid_prj.weight.grad is not None
    assert grid_model.osm_grid_prj.weight.grad is not None
    assert grid_model.img_grid_prj.weight.grad.abs().sum() > 0
    assert grid_model.osm_grid_prj.weight.grad.abs().sum() > 0
