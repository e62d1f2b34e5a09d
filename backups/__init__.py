"""The operators' command for a workspace's backups: `python -m backups`.

    python -m backups list                       # the current stack's backups
    python -m backups download latest -o .       # the newest good database dump
    python -m backups download latest -o . --with-data ./data   # and CVAT's data (restic)
    python -m backups verify 20261130T030000Z    # download + pg_restore (+ restic check)
    python -m backups now                        # run a backup in the cluster (kubectl)
    python -m backups status                     # exit 3 when the newest good one is too old
    python -m backups --stack acme list

It reads the layout of docs/backups.md (all of it in `layout`). Where the backups are
comes from the stack (``pulumi stack output`` and ``pulumi config``), or from explicit
options: ``--endpoint --region --bucket --prefix``, with the keys in
``--access-key``/``--secret-key`` or the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY). Local tools it uses when present: ``pg_restore`` (verify),
``restic`` (data snapshots), ``kubectl`` (now). Endpoints are printed without their
user:password@ part.

Modules, each depending only on those above it:

- ``errors``, ``tools``: exit codes; running and reading the local tools
- ``layout``: stamps, keys, the manifest format, the clock rule (docs/backups.md)
- ``display``: human formats, progress, the listing, redaction
- ``location``: where the backups are (the stack or the options); ``s3``: its requests
- ``restic``: the data repository
- ``catalog``: the inventory of what is stored, entries, latest, clock flags
- ``reference``: which backup an operator names
- ``download``: download, read back, restore the data; ``kubectl``: `now`'s Job
- ``schedule``: `status`'s limit; ``commands``: the five commands; ``cli``: options, main
"""
