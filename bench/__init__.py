"""mbbench: a benchmarking suite for multi-behavior recommendation."""
import warnings

# torch warns on every sparse CSR tensor it builds; the suite builds them on purpose.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

__version__ = "0.1.0"
