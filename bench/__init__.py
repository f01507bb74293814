"""mbbench: a benchmarking suite for multi-behavior recommendation."""
import warnings

# torch warns on every sparse CSR tensor it builds; the suite builds them on purpose.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


def __getattr__(name: str):
    # the version is read on demand from one place (bench.version), never written twice
    if name == "__version__":
        from bench.version import package_version
        return package_version()
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
