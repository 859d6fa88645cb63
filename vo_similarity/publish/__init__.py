"""Publication of images and their neighbours in GAVO DaCHS (docs/publish.md).

Modules: :mod:`.dachs` (the local DaCHS: config, credentials, the ``dachs``
command), :mod:`.resdir` (the files DaCHS imports and serves), :mod:`.copy`
(binary COPY into staging tables and the atomic swap), :mod:`.collections`
(collections side by side: names, id offsets, the checks), :mod:`.increments`
(sending only the rows ``update`` changed), :mod:`.migrate` (installations of
older versions), :mod:`.publisher` (the whole publication), :mod:`.queries` (the ADQL users copy), :mod:`.sample` (a
small complete work directory for tests and benchmarks), :mod:`.cli`.
"""
