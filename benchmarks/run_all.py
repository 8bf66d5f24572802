# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Run every benchmark script of this folder and write ``benchmarks/RESULTS.md``.

Each script measures its own baseline in the same run (the all-pairs graph builder,
TorchGeo's ``VectorDataset``, a bare MAE step) and prints a table of ratios against it;
this runner only executes the scripts as subprocesses (with ``--quick`` when a script
offers it, unless ``--full``), records the exact command, and adds the machine, versions
and date.

Usage:
``python benchmarks/run_all.py [--full] [--only NAME ...] [--timeout SECONDS] [--output PATH]``
(``make bench`` runs it with the defaults).
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Scripts in the order the report shows them; any other ``*.py`` of this folder
#: follows, alphabetically.
ORDER = ('graph_builder', 'data_pipeline', 'train_step')

#: Distributions whose versions the report lists.
PACKAGES = (
    'torchgeo-geolink',
    'torch',
    'torchgeo',
    'torch-geometric',
    'timm',
    'shapely',
    'geopandas',
    'pyogrio',
    'rasterio',
    'numpy',
    'lightning',
)


@dataclass
class Run:
    """The outcome of one benchmark script."""

    name: str
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


def discover(only: list[str] | None = None) -> list[Path]:
    """List the benchmark scripts to run.

    Args:
        only: names (without ``.py``) to restrict to.

    Returns:
        The scripts, in report order.

    Raises:
        SystemExit: If a name of *only* has no script.
    """
    scripts = {
        p.stem: p
        for p in HERE.glob('*.py')
        if p.stem != Path(__file__).stem and not p.stem.startswith('_')
    }
    names = [n for n in ORDER if n in scripts] + sorted(set(scripts) - set(ORDER))
    if only:
        missing = sorted(set(only) - set(scripts))
        if missing:
            msg = f'no benchmark script named {missing} in {HERE} (found: {sorted(scripts)})'
            raise SystemExit(msg)
        names = [n for n in names if n in only]
    return [scripts[n] for n in names]


def supports_quick(script: Path) -> bool:
    """Whether a script's command line offers ``--quick``.

    Args:
        script: the benchmark script.

    Returns:
        True if its source declares a ``--quick`` option.
    """
    return "'--quick'" in script.read_text() or '"--quick"' in script.read_text()


def run(script: Path, quick: bool, timeout: float) -> Run:
    """Run one benchmark script, capturing its output.

    Args:
        script: the benchmark script.
        quick: pass ``--quick`` if the script supports it.
        timeout: seconds before the script is stopped.

    Returns:
        The run's outcome (``returncode`` None when it timed out).
    """
    command = [sys.executable, str(script.relative_to(ROOT))]
    if quick and supports_quick(script):
        command.append('--quick')
    print(f'$ {shlex.join(command)}', flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as err:
        returncode = None
        stdout = (
            err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or '')
        )
        stderr = f'stopped after {timeout:.0f} s'
    seconds = time.perf_counter() - start
    print(stdout, flush=True)
    if returncode != 0:
        print(stderr[-2000:], file=sys.stderr, flush=True)
    return Run(script.stem, command, returncode, stdout, stderr, seconds)


def cpu_model() -> str:
    """Name of the CPU.

    Returns:
        The model name from ``/proc/cpuinfo``, or :func:`platform.processor`.
    """
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def gpu_name() -> str | None:
    """Name of the first CUDA device, if any.

    Returns:
        The device name, or None without a GPU.
    """
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def versions() -> str:
    """Versions of the packages the numbers depend on.

    Returns:
        ``name version`` pairs, comma separated.
    """
    out = [f'Python {platform.python_version()}']
    for name in PACKAGES:
        try:
            out.append(f'{name} {importlib.metadata.version(name)}')
        except importlib.metadata.PackageNotFoundError:
            continue
    return ', '.join(out)


def as_markdown(text: str) -> str:
    """Embed a script's output: Markdown tables as they are, the rest as a code block.

    Args:
        text: the captured standard output.

    Returns:
        Markdown.
    """
    text = text.strip()
    if not text:
        return '_(no output)_'
    if re.search(r'^\|[\s:-]*-{3,}', text, flags=re.MULTILINE):
        # a script's own '# Title' lines would break the report's heading levels: show
        # them in bold
        return re.sub(r'^#+\s+(.+)$', r'**\1**', text, flags=re.MULTILINE)
    return f'```text\n{text}\n```'


def report(runs: list[Run], quick: bool) -> str:
    """Assemble ``RESULTS.md``.

    Args:
        runs: the outcomes, in report order.
        quick: whether quick options were used.

    Returns:
        The Markdown report.
    """
    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, 'sched_getaffinity')
        else os.cpu_count()
    )
    gpu = gpu_name()
    machine = (
        f'{platform.system()} {platform.release()} ({platform.machine()}), {cpu_model()}, '
        f'{cores} usable cores, 1-min load average {os.getloadavg()[0]:.2f} when the report was written'
    )
    lines = [
        '# Benchmark results',
        '',
        'Written by `python benchmarks/run_all.py` (`make bench`); do not edit by hand. Every table compares against a',
        'baseline measured in the same run, on the same machine, so ratios are comparable across machines while',
        'absolute numbers are not.',
        '',
        f'- Date: {datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}',
        f'- Machine: {machine}',
        f'- GPU: {gpu or "none"}',
        f'- Versions: {versions()}',
        f'- Mode: {"quick (`--quick` where a script offers it)" if quick else "full"}',
        '',
    ]
    if not runs:
        lines += ['No benchmark script was found.', '']
    for r in runs:
        status = (
            'ok'
            if r.returncode == 0
            else ('timed out' if r.returncode is None else f'failed ({r.returncode})')
        )
        lines += [
            f'## {r.name}',
            '',
            f'Command: `{shlex.join(r.command)}` ({r.seconds:.0f} s, {status})',
            '',
        ]
        lines += [as_markdown(r.stdout), '']
        if r.returncode != 0:
            tail = '\n'.join(r.stderr.strip().splitlines()[-15:])
            lines += ['Error output (last lines):', '', f'```text\n{tail}\n```', '']
    lines += ['## GPU', '']
    if gpu is None:
        lines += [
            'No GPU was available when this report was written, so it has no GPU figures (ViT-L/16 bf16 pretraining',
            'samples/s and model FLOPs utilization). Run `make bench` on a GPU machine to add them: the training-step',
            'benchmark measures on CUDA when a device is present.',
            '',
        ]
    else:
        lines += [
            f'The tables above were measured with `{gpu}` present (see each table for the device it used).',
            '',
        ]
    return '\n'.join(lines)


def main() -> None:
    """Parse the command line, run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--full', action='store_true', help="run without the scripts' --quick options"
    )
    parser.add_argument(
        '--only',
        nargs='+',
        metavar='NAME',
        help='run only these scripts (names without .py)',
    )
    parser.add_argument(
        '--timeout',
        type=float,
        default=1200.0,
        help='seconds per script (default 1200)',
    )
    parser.add_argument(
        '--output', type=Path, default=HERE / 'RESULTS.md', help='report path'
    )
    args = parser.parse_args()
    quick = not args.full
    runs = [run(script, quick, args.timeout) for script in discover(args.only)]
    args.output.write_text(report(runs, quick))
    print(f'wrote {args.output}')
    if any(r.returncode != 0 for r in runs):
        raise SystemExit(1)


if __name__ == '__main__':
    main()
