"""The batch sizes the planner reasons about: where the run-time model is fitted, the large batch
the choice also weighs, and the chunks a large CPU batch runs in (:func:`.program.batch_chunk`).
"""

from __future__ import annotations

REFERENCE_BATCH = 1024          # the batch the run-time model (:mod:`.cost`) is fitted at
LARGE_BATCH = 16384             # the second batch a chosen strategy must also be fast at
BYTES_PER_NUMBER = 4

# Large batches run on the CPU in chunks whose intermediates (float32) take about CHUNK_BYTES: the
# largest power of two of samples, at least MIN_CHUNK. Measured at N = 16384 (2 threads), chunks of
# 16-32 MiB beat one pass by 1.4-2.3x forward and 1.4-1.7x forward+backward (fc_tp, uvu, the 3-leaf
# fusion): intermediates stay in cache, and allocations stay below glibc's mmap threshold (32 MiB),
# so they are reused instead of page-faulted in afresh on every call.
CHUNK_BYTES = 1 << 25
MIN_CHUNK = 256
MAX_CHUNK = 1 << 20
