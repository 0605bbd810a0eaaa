"""Model registrations, one module per family; importing this package registers them
all in ``mmtk.models.MODELS``. Each builder imports its torch module when called."""

from mmtk.models.catalog import fusion  # noqa: F401
from mmtk.models.catalog import transformers  # noqa: F401
from mmtk.models.catalog import autoencoders  # noqa: F401
from mmtk.models.catalog import classical  # noqa: F401
from mmtk.models.catalog import multitask  # noqa: F401
from mmtk.models.catalog import combining  # noqa: F401
from mmtk.models.catalog import bert  # noqa: F401
from mmtk.models.catalog import mult  # noqa: F401
from mmtk.models.catalog import stack  # noqa: F401
