# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The README's example runs as written."""

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / 'README.md'


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, 'the README should hold exactly one Python example'
    monkeypatch.chdir(tmp_path)
    script = tmp_path / 'readme_example.py'
    script.write_text(blocks[0])
    namespace = runpy.run_path(str(script))
    batch = namespace['batch']
    assert isinstance(batch, dict)
    assert batch['image'].shape == (4, 3, 64, 64)
    assert batch['graph'].num_graphs == 4
    out = namespace['out']
    assert out.loss.isfinite()
    assert (tmp_path / 'data' / 'geolink_demo').is_dir()
