"""Deprecated: the operators' backup command is now its own package, `python -m backups`.

`python -m components.backups ...` still runs it, after a one-line notice on stderr,
until a later change removes this entry point (this module is to hold the database's
backup resources, beside components/database.py).
"""

if __name__ == "__main__":
    import sys

    from backups.cli import main

    sys.stderr.write("components.backups is now `python -m backups`\n")
    sys.exit(main())
