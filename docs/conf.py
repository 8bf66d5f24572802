# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Sphinx configuration of the torchgeo-geolink documentation."""

import re
import sys
from pathlib import Path

from docutils.nodes import Element
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import torchgeo_geolink

# -- Project information
# --------------------------------------------------------------------------------------

project = 'torchgeo-geolink'
author = 'torchgeo-geolink Contributors'
copyright = 'torchgeo-geolink Contributors'
version = '.'.join(torchgeo_geolink.__version__.split('.')[:2])
release = torchgeo_geolink.__version__

# -- General configuration
# --------------------------------------------------------------------------------------

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.intersphinx',
    'sphinx.ext.mathjax',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3

# Every cross-reference must resolve (-W turns a miss into an error) ...
nitpicky = True
# ... except references into third-party packages, which only resolve when their
# inventories can be downloaded: offline (CI, this machine) intersphinx falls back to an
# empty inventory and these stay unresolved. Our own namespace, torchgeo_geolink, is
# deliberately NOT listed: a broken reference to it fails the build.
_EXTERNAL = (
    'torch',
    'torch_geometric',
    'torchgeo',
    'torchvision',
    'torchmetrics',
    'shapely',
    'geopandas',
    'pandas',
    'numpy',
    'rasterio',
    'pyproj',
    'timm',
    'lightning',
    'kornia',
    'matplotlib',
    'mpl_toolkits',
    'segmentation_models_pytorch',
    'scipy',
    'jsonargparse',
    'collections',
    'typing',
    'typing_extensions',
    'types',
    'pathlib',
    'os',
    're',
    'enum',
    'abc',
    'functools',
    'dataclasses',
    'concurrent',
    'affine',
    'litdata',
    'ray',
    'pyarrow',
    'argparse',
)
_BUILTINS = (
    'int',
    'float',
    'bool',
    'str',
    'bytes',
    'object',
    'list',
    'tuple',
    'dict',
    'set',
    'frozenset',
    'slice',
    'type',
    'None',
    'Ellipsis',
    'Exception',
    'ValueError',
    'TypeError',
    'KeyError',
    'IndexError',
    'RuntimeError',
    'FileNotFoundError',
    'NotImplementedError',
)
_ROLES = r'py:(class|obj|func|meth|attr|data|exc|mod|type)'
_TORCHGEO_BARE = (
    r'(GeoDataset|RasterDataset|VectorDataset|NonGeoDataset|IntersectionDataset|UnionDataset|GeoSlice'
    r'|GeoSampler|SpatialSampler|BaseTask|GeoDataModule|NonGeoDataModule|DatasetNotFoundError|WeightsEnum)'
)
nitpick_ignore_regex = [
    (_ROLES, rf'({"|".join(re.escape(name) for name in _EXTERNAL)})(\..+)?'),
    (_ROLES, rf'({"|".join(_BUILTINS)})'),
    # Bare names that typing annotations and Google docstrings produce for third-party
    # types.
    (
        _ROLES,
        r'(Tensor|Module|HeteroData|Batch|Figure|Axes|Path|Sample|BoundingBox|CRS|Affine|GeoDataFrame)',
    ),
    (
        _ROLES,
        r'(Any|Callable|Iterable|Iterator|Sequence|Mapping|Literal|Self|Protocol|TypeAlias)',
    ),
    # Bare names of TorchGeo types (from its own annotations and from "Bases:" lines).
    (_ROLES, _TORCHGEO_BARE),
]

# -- autodoc / napoleon
# --------------------------------------------------------------------------------------

autodoc_default_options = {
    'members': True,
    # __init__ holds the constructor's Args; the others are the dataset/sampler/callable
    # protocols.
    'special-members': '__init__, __call__, __getitem__, __len__, __iter__, __and__, __or__',
    'show-inheritance': True,
    'member-order': 'bysource',
}
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented'
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- intersphinx (offline-safe)
# --------------------------------------------------------------------------------------

# Each project has two locations: its online objects.inv, then an empty local inventory.
# Sphinx warns only when every location of a project fails, so an offline build loads
# the empty one silently.
_EMPTY = '_static/empty.inv'
_INVENTORIES = {
    'python': 'https://docs.python.org/3',
    'torch': 'https://docs.pytorch.org/docs/stable',
    'torchvision': 'https://docs.pytorch.org/vision/stable',
    'torchgeo': 'https://torchgeo.readthedocs.io/en/stable',
    'torch_geometric': 'https://pytorch-geometric.readthedocs.io/en/stable',
    'lightning': 'https://lightning.ai/docs/pytorch/stable',
    'shapely': 'https://shapely.readthedocs.io/en/stable',
    'geopandas': 'https://geopandas.org/en/stable',
    'pandas': 'https://pandas.pydata.org/docs',
    'numpy': 'https://numpy.org/doc/stable',
    'rasterio': 'https://rasterio.readthedocs.io/en/stable',
    'pyproj': 'https://pyproj4.github.io/pyproj/stable',
    'matplotlib': 'https://matplotlib.org/stable',
    'kornia': 'https://kornia.readthedocs.io/en/stable',
    'timm': 'https://huggingface.co/docs/timm/main/en',
    'smp': 'https://smp.readthedocs.io/en/latest',
}
intersphinx_mapping = {
    name: (url, (None, _EMPTY)) for name, url in _INVENTORIES.items()
}
intersphinx_timeout = 2

# -- HTML
# --------------------------------------------------------------------------------------

html_theme = 'pydata_sphinx_theme'
html_static_path = ['_static']
html_title = 'torchgeo-geolink'
html_theme_options = {
    'github_url': 'https://github.com/torchgeo/torchgeo',
    'navigation_with_keys': False,
    'show_toc_level': 2,
}
html_show_sourcelink = False


# -- Tutorials
# --------------------------------------------------------------------------------------

_STUB = re.compile(r'<!--\s*jupytext:\s*(?P<script>[\w.-]+\.py)\s*-->')


def _render_tutorial(script: Path) -> str:
    """Render a jupytext percent-format script as MyST Markdown, with its saved figures.

    Markdown cells are copied, code cells become ``python`` code blocks, and after the
    n-th code cell that calls ``plt.show()`` the figure
    ``_static/tutorials/<stem>_<n>.png`` saved by ``docs/make_figures.py`` is shown.

    Args:
        script: the tutorial script.

    Returns:
        The page as MyST Markdown.
    """
    import jupytext

    notebook = jupytext.read(script, fmt='py:percent')
    parts: list[str] = []
    shown = 0
    for cell in notebook.cells:
        source = cell.source.strip('\n')
        if cell.cell_type == 'markdown':
            parts.append(source)
        elif cell.cell_type == 'code' and all(
            line.startswith('#') for line in source.splitlines()
        ):
            continue  # the license header
        elif cell.cell_type == 'code':
            parts.append(f'```python\n{source}\n```')
            for _ in re.finditer(r'plt\.show\(\)', source):
                shown += 1
                figure = DOCS / '_static' / 'tutorials' / f'{script.stem}_{shown}.png'
                if figure.exists():
                    parts.append(
                        f'```{{image}} /_static/tutorials/{figure.name}\n:width: 100%\n```'
                    )
    download = f'Download this tutorial as a script: {{download}}`{script.name}`.'
    return '\n\n'.join([*parts[:1], download, *parts[1:]]) + '\n'


_AUTOMODULE = re.compile(
    r'^\.\. automodule:: (?P<name>torchgeo_geolink\.\w+)\s*$', re.MULTILINE
)


def _constants_section(module_name: str) -> str:
    """Document the constants a subpackage exports.

    ``automodule`` documents imported classes and functions listed in ``__all__`` but
    not imported data, so the upper-case names of ``__all__`` are appended as
    ``autodata`` entries (their text is the ``#:`` comment in the defining module, see
    :func:`_on_process_docstring`).

    Args:
        module_name: the subpackage.

    Returns:
        reStructuredText to append to its API page ('' when it exports no constant).
    """
    import importlib

    names = [
        n
        for n in getattr(importlib.import_module(module_name), '__all__', ())
        if n.isupper()
    ]
    if not names:
        return ''
    entries = ''.join(
        f'\n.. autodata:: {module_name}.{name}\n   :no-value:\n' for name in names
    )
    return f'\nConstants\n---------\n{entries}'


def _on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace a ``<!-- jupytext: name.py -->`` stub with the rendered script.

    Args:
        app: the Sphinx application.
        docname: the document being read.
        source: one-element list holding the document text (replaced in place).
    """
    module = _AUTOMODULE.search(source[0])
    if module is not None:
        source[0] += _constants_section(module['name'])
    match = _STUB.search(source[0])
    if match is None:
        return
    script = (DOCS / docname).parent / match['script']
    source[0] = _render_tutorial(script)


def _on_process_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Give an exported constant the ``#:`` comment of the module that defines it.

    Args:
        app: the Sphinx application.
        what: the object's type.
        name: its full name (``torchgeo_geolink.osm.NODE_TYPES``).
        obj: the object.
        options: the directive's options.
        lines: the docstring lines (edited in place).
    """
    if what != 'data' or not name.startswith('torchgeo_geolink.'):
        return
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    package, attr = name.rsplit('.', 1)
    for module_name, module in list(sys.modules.items()):
        if (
            module is None
            or not module_name.startswith(package + '.')
            or not hasattr(module, attr)
        ):
            continue
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:  # compiled or source-less module
            continue
        if ('', attr) in docs:
            lines[:] = list(docs['', attr])
            return
    if getattr(obj, '__doc__', None) == getattr(type(obj), '__doc__', None):
        lines[
            :
        ] = []  # not the constant's own text but its type's (dict, tuple, pyproj.CRS)


def _is_public(cls: type) -> bool:
    """Whether a class of this package is part of its documented API.

    That is, whether its subpackage's ``__all__`` lists it.

    Args:
        cls: the class.

    Returns:
        True for public classes and for classes of other packages.
    """
    module = cls.__module__
    if not module.startswith('torchgeo_geolink'):
        return True
    if cls.__name__.startswith('_'):
        return False
    package = sys.modules.get('.'.join(module.split('.')[:2]))
    return cls.__name__ in getattr(package, '__all__', ())


def _public_bases(bases: list[type]) -> list[type]:
    """Replace private or unexported bases of our classes by their bases, recursively.

    Args:
        bases: the bases autodoc is about to show.

    Returns:
        The bases to show, each documented here or in another package.
    """
    out: list[type] = []
    for base in bases:
        for shown in (
            [base] if _is_public(base) else _public_bases(list(base.__bases__))
        ):
            if shown not in out and shown is not object:
                out.append(shown)
    return out or [object]


def _on_process_bases(
    app: Sphinx, name: str, obj: object, options: object, bases: list[type]
) -> None:
    """Show only documented bases under "Bases:" (skip private helpers and mixins).

    Args:
        app: the Sphinx application.
        name: the documented class's name.
        obj: the class.
        options: the directive's options.
        bases: the bases to show (edited in place).
    """
    bases[:] = _public_bases(list(bases))


def _on_missing_reference(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Element | None:
    """Resolve references to our objects by the name they are documented under.

    The API pages document every public object under its subpackage
    (``torchgeo_geolink.osm.TagEncoder``), while type hints and some docstrings name the
    defining module (``torchgeo_geolink.osm.encoders.TagEncoder``) or only the object
    (``TagEncoder``). Such a reference resolves when exactly one documented object of
    this package matches; anything else stays unresolved (and fails the nitpicky build).

    Args:
        app: the Sphinx application.
        env: the build environment.
        node: the unresolved reference.
        contnode: its content node.

    Returns:
        The resolved reference node, or None.
    """
    if node.get('refdomain') != 'py':
        return None
    target: str = node['reftarget']
    objects = env.domains['py'].objects
    parts = target.split('.')
    if parts[0] == 'torchgeo_geolink' and len(parts) >= 4:
        candidates = ['.'.join(parts[:2] + parts[i:]) for i in range(3, len(parts))]
        matches = [name for name in candidates if name in objects]
    elif parts[0] != 'torchgeo_geolink':
        suffix = '.' + target
        matches = [
            name
            for name in objects
            if name.startswith('torchgeo_geolink.') and name.endswith(suffix)
        ]
    else:
        matches = []
    if len(matches) != 1:
        return None
    entry = objects[matches[0]]
    return make_refnode(
        app.builder, node['refdoc'], entry.docname, entry.node_id, contnode, matches[0]
    )


def setup(app: Sphinx) -> None:
    """Register the tutorial renderer and the base-class filter.

    Args:
        app: the Sphinx application.
    """
    app.connect('source-read', _on_source_read)
    app.connect('autodoc-process-bases', _on_process_bases)
    app.connect('missing-reference', _on_missing_reference)
    app.connect('autodoc-process-docstring', _on_process_docstring)
