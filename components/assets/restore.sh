#!/bin/sh
# Restores the workspace's PostgreSQL database from a backup in object storage.
#
# RESTORE_STEP chooses what runs:
#   fetch    find the backup and download it into RESTORE_DIR (needs the AWS CLI);
#   restore  load it into the database in one transaction (needs pg_restore, psql);
#   all      both (the default).
# In the restore Job, "fetch" runs in an init container and "restore" in the
# main container; they share RESTORE_DIR.
#
# It refuses (exit code 3) to restore into a database that already holds
# tables unless RESTORE_FORCE is "true". A failed restore leaves the database
# as it was. Once a restore succeeded, running it again for the same
# RESTORE_FROM does nothing (the database remembers it in its comment).
#
# Environment:
#   RESTORE_FROM     "latest", a key in BACKUP_BUCKET, or s3://<bucket>/<key>
#   RESTORE_FORCE    "true" to replace existing tables (default "false")
#   RESTORE_DIR      where the archive waits between the steps (default: a temporary directory)
#   BACKUP_BUCKET BACKUP_PREFIX   where "latest" and plain keys are looked up
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the database (libpq variables)
#   WAIT_SECONDS     how long to wait for the database to accept connections (default 300)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

REFUSED=3
step=${RESTORE_STEP:-all}
source=${RESTORE_FROM:?RESTORE_FROM is not set}
case "$source" in
    *"'"* | *'"'* | *'\'* | *' '*) fail "RESTORE_FROM must not contain quotes, backslashes or spaces" ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
dir=${RESTORE_DIR:-$work}
archive="$dir/restore.dump"

fetch() {
    s3_cli_setup "$work"
    case "$source" in
        latest)
            bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
            prefix=${BACKUP_PREFIX:?BACKUP_PREFIX is not set}
            backup_list "$bucket" "$prefix" "$work/backups"
            name=$(tail -n 1 "$work/backups" | cut -d ' ' -f 1)
            [ -n "$name" ] || fail "no backup found under s3://$bucket/$prefix"
            key="$prefix$name"
            ;;
        s3://*)
            rest=${source#s3://}
            bucket=${rest%%/*}
            key=${rest#*/}
            ;;
        *)
            bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
            key=$source
            ;;
    esac
    echo "downloading s3://$bucket/$key ..."
    aws s3 cp "s3://$bucket/$key" "$archive" --only-show-errors --no-progress ||
        fail "cannot download s3://$bucket/$key"
    echo "downloaded s3://$bucket/$key ($(wc -c <"$archive" | tr -d ' ') bytes)"
}

sql() {
    psql --no-psqlrc --no-password --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 "$@"
}

restore() {
    [ -n "${PGDATABASE:-}" ] || fail "PGDATABASE is not set"
    [ -s "$archive" ] || fail "no backup to restore in $dir"
    pg_restore --list "$archive" >/dev/null || fail "$archive is not a readable pg_dump archive"

    deadline=$(($(date +%s) + ${WAIT_SECONDS:-300}))
    until pg_isready --quiet; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "database ${PGHOST:-local socket} did not accept connections in time"
        sleep 2
    done

    marker="labeling-restore: $source"
    current=$(sql -c "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()") ||
        fail "cannot connect to database $PGDATABASE"
    if [ "$current" = "$marker" ]; then
        echo "database $PGDATABASE was already restored from $source: nothing to do"
        return 0
    fi

    tables=$(sql -c "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    clean=""
    if [ "$tables" -gt 0 ]; then
        if [ "${RESTORE_FORCE:-false}" != "true" ]; then
            echo "refusing to restore: database $PGDATABASE already holds $tables tables (CVAT data)." >&2
            echo "Nothing was changed. To replace them, set restoreForce to true and run again." >&2
            exit "$REFUSED"
        fi
        echo "database $PGDATABASE holds $tables tables: replacing them (RESTORE_FORCE=true)"
        clean="--clean --if-exists"
    fi

    # One transaction: either the whole backup is in, or nothing changed.
    # shellcheck disable=SC2086
    pg_restore --no-password --no-owner --no-privileges --role="$PGUSER" --dbname="$PGDATABASE" \
        --single-transaction --exit-on-error $clean "$archive" ||
        fail "pg_restore failed; the database was left as it was"
    printf 'COMMENT ON DATABASE :"database" IS :%s;\nANALYZE;\n' "'marker'" |
        sql -v database="$PGDATABASE" -v marker="$marker" || fail "restored, but could not record the restore"
    echo "restored database $PGDATABASE from $source"
}

case "$step" in
    fetch) fetch ;;
    restore) restore ;;
    all)
        fetch
        restore
        ;;
    *) fail "RESTORE_STEP must be fetch, restore or all (got '$step')" ;;
esac
