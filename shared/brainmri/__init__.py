"""brainmri: brain MRI tumor triage library shared by the API, worker and trainer services.

Research and triage only. This software is not a medical device and must not be used for
diagnosis or patient management.
"""

from importlib.metadata import PackageNotFoundError, version

DISCLAIMER = (
    "Research/triage only - not a medical device. Do not use for diagnosis or patient management."
)

try:
    __version__ = version("brainmri")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["DISCLAIMER", "__version__"]
