"""How the pipeline's numerical work uses threads."""
from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread"]


def one_blas_thread() -> threadpool_limits:
    """Context manager: BLAS (numpy's linear algebra) on one thread inside the block.

    Heads, T-learners and risks solve many small systems (hundreds of rows,
    tens of columns), where BLAS threads cost more than they save; with the
    cores shared, their busy-waiting made a 900 x 27 SVD take 0.27 s instead
    of 1.2 ms (measured). Torch and XGBoost keep their own thread settings.
    """
    return threadpool_limits(limits=1, user_api="blas")
