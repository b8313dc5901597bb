"""Running curation on a cluster engine: the same :func:`curate_unit` mapped with Dask.

The pipeline's only heavy stage is per-unit (one video, or one chunk of image pairs) and journals its own
result on the shared output directory, so any engine that can map a Python function over a list can
run it: plan on the driver, map ``curate_unit`` over the units, then ``finalize`` on the driver.
A cluster run resumes like a local one, since finished units are in the journal.

Dask is a base dependency (``egoframe data curate --engine dask``); pass a ``distributed.Client`` address
(``pip install 'egoframe[cluster]'`` brings ``distributed``) to spread units over its workers, or run
locally with the ``processes``/``threads``/``sync`` schedulers. The output directory and the videos must be
reachable under the same paths from every worker (a shared file system).
"""

from __future__ import annotations

from egoframe.data.curate import CurationConfig, UnitResult, curate_unit, finalize, prepare
from egoframe.errors import InputError


def curate_with_dask(config: CurationConfig, scheduler: str = "processes", address: str = "") -> dict:
    """Curate with ``dask.bag``; ``address`` (``tcp://host:8786``) uses a running Dask cluster."""
    try:
        import dask
        import dask.bag as db
    except ImportError as exc:
        raise InputError("Dask is not installed: pip install dask (egoframe depends on it)") from exc
    units, skips, n_read = prepare(config)
    if not units:
        return finalize(config, [], skips, n_read)
    # One partition per unit: a unit is already a good-sized task (a whole video).
    bag = db.from_sequence(units, npartitions=len(units)).map(curate_unit, config)
    if address:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("a Dask cluster address needs distributed: pip install 'egoframe[cluster]'") from None

        with Client(address) as client:
            results: list[UnitResult] = client.compute(bag).result()
    else:
        with dask.config.set(scheduler=scheduler, num_workers=config.workers):
            results = bag.compute()
    return finalize(config, list(results), skips, n_read)
