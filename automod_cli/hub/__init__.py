"""Named models: the cache of pulled models, the released models of the reference implementation, and
the resumable downloader that fetches them (``automod pull``).

``cache``    where models live on disk and how a name or a path on ``-m`` becomes a file (one place).
``catalog``  the reference's five released checkpoints and its attribute directions, with their sources.
``download`` HTTP(S)/file downloads into a ``.part`` file, resumed with Range requests, retried.
``pull``     download → check → convert → attach attributes → write into the cache.
"""
