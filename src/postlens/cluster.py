"""cluster: the chunks of :mod:`postlens.parallel`, read on a Dask distributed cluster.

The plan (chunks and the year at each chunk start) is made where postlens runs; each chunk
is read by :func:`~postlens.parallel.read_chunk` on a worker, and the partial results come
back in log order to be merged here, exactly as with ``-j``. Workers open the inputs
themselves, so local paths must be the same on every worker (a shared file system); fsspec
URLs (s3://, gs://, hdfs://, http://) work anywhere the storage's package is installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from postlens import progress
from postlens.errors import InputError, UsageError
from postlens.parallel import Chunk, chunk_size, merge_parts, plan, read_chunk
from postlens.pipeline import Analysis, Settings
from postlens.sources import expand, is_journal

MISSING = "--engine dask needs Dask: pip install 'postlens[dask]'"


@contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise UsageError(MISSING) from e
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise UsageError(f"--scheduler: cannot reach {scheduler}: {e}") from e
        with client:
            yield client
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


def _in_order(
    client: Any, settings: Settings, chunks: list[Chunk]
) -> Iterator[tuple[Analysis, InputError | None]]:
    futures = client.map(read_chunk, [settings] * len(chunks), chunks, pure=False)
    for chunk, future in zip(chunks, futures, strict=True):
        part = future.result()
        future.release()  # the worker may drop it: it is merged here
        progress.advance(chunk.length if chunk.length is not None else chunk.source.size or 0)
        yield part


def analyse_dask(
    paths: list[str],
    settings: Settings,
    scheduler: str | None = None,
    jobs: int | None = None,
    chunk_bytes: int | None = None,
) -> tuple[dict[str, Any], list[InputError]]:
    """Like :func:`postlens.parallel.analyse_parallel`, on the Dask cluster at ``scheduler``
    (a local cluster of ``jobs`` worker processes when None)."""
    sources, problems = expand(paths)
    if any(s.path == "-" or is_journal(s.path) for s in sources):
        raise UsageError("--engine dask cannot read standard input or the journal: name the files")
    jobs = jobs or os.cpu_count() or 1
    with _client(scheduler, jobs) as client:
        width = len(client.scheduler_info().get("workers", {})) or jobs
        chunks = plan(sources, settings, chunk_bytes or chunk_size(sources, width))
        return merge_parts(sources, problems, settings, chunks, _in_order(client, settings, chunks))
