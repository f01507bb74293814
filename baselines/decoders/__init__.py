"""Multi-task decoders (heads) any encoder can take: dot, bilinear, shared-bottom, MMoE, PLE, MESI, PME."""
