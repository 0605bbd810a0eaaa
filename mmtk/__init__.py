"""mmtk: multimodal classification toolkit.

The command line (``mmtk ...``) is a thin layer over the library functions in this
package; everything works from Python without Typer. Heavy modules (torch, transformers,
open_clip) are imported inside functions so that ``import mmtk`` and ``mmtk --help``
stay fast.
"""

__version__ = "0.1.0"
