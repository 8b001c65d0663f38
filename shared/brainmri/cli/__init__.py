"""The ``brainmri`` command line."""
