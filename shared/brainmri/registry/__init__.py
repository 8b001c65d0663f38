"""The model registry: bundles in the object store, versions and stages in the database."""
