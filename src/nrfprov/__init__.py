"""nrfprov: provision Nordic nRF91 modems with AWS IoT credentials over their AT interface."""

from importlib.metadata import PackageNotFoundError, version

from nrfprov.config import Settings, load_settings
from nrfprov.errors import NrfprovError

try:
    __version__ = version("nrfprov")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["NrfprovError", "Settings", "__version__", "load_settings"]
