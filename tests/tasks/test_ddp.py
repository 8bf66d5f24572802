# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-process training: Lightning DDP on two CPU processes (gloo) via the CLI."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.test_cli import CONF, city  # noqa: F401 (fixture)


@pytest.mark.slow
def test_ddp_two_processes(city: list[str], tmp_path: Path) -> None:  # noqa: F811
    command = [
        sys.executable, '-m', 'torchgeo', 'fit', '--config', str(CONF / 'geolink_pretrain.yaml'), *city,
        '--data.init_args.length', '8',
        '--model.init_args.gather_distributed', 'true',
        '--trainer.accelerator', 'cpu', '--trainer.devices', '2', '--trainer.strategy', 'ddp',
        '--trainer.max_epochs', '1', '--trainer.limit_train_batches', '1', '--trainer.limit_val_batches', '1',
        '--trainer.num_sanity_val_steps', '0', '--trainer.log_every_n_steps', '1', '--trainer.enable_progress_bar', 'false',
        '--trainer.enable_checkpointing', 'false', '--trainer.logger', 'lightning.pytorch.loggers.CSVLogger',
        '--trainer.logger.save_dir', str(tmp_path), '--trainer.default_root_dir', str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        'Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2'
        in result.stderr + result.stdout
    )
    (metrics,) = tmp_path.glob('lightning_logs/version_*/metrics.csv')
    rows = list(csv.DictReader(metrics.open()))
    chance = [
        float(r['val_retrieval_chance']) for r in rows if r.get('val_retrieval_chance')
    ]
    # one validation batch of 2 windows per process: the retrieval pool holds the 4
    # windows of both processes, in the baseline validation before training and in the
    # validation after the epoch
    assert chance == [pytest.approx(0.25)] * 2
    assert any(r.get('train_loss_step') for r in rows)
