#!/bin/sh
# Restores the workspace's PostgreSQL database from a backup in object storage.
#
# RESTORE_STEP chooses what runs:
#   check    before anything is downloaded: says whether this request is already
#            restored (then the later steps do nothing) and refuses (exit code 3)
#            a database that holds tables unless RESTORE_FORCE is "true"
#            (needs psql, pg_isready);
#   fetch    find the backup and download it into RESTORE_DIR (needs the AWS CLI);
#            nothing to do when the check found the request already restored;
#   restore  check again (the database may have changed meanwhile), then load the
#            backup in one transaction (needs pg_restore, psql);
#   all      the three in order (the default).
# In the restore Job, "check" and "fetch" run in init containers and "restore"
# in the main container; they share RESTORE_DIR.
#
# It refuses (exit code 3) to restore into a database that already holds
# tables unless RESTORE_FORCE is "true". The restore and a marker naming the
# request are one transaction: a failed restore leaves the database as it was,
# and a retry of a request that already succeeded does nothing and downloads
# nothing.
#
# Environment:
#   RESTORE_FROM     "latest", a key in BACKUP_BUCKET, or s3://<bucket>/<key>
#   RESTORE_REQUEST  id of this restore request (default: RESTORE_FROM); a new id restores again
#   RESTORE_FORCE    "true" to replace existing tables (default "false")
#   RESTORE_DIR      what the steps hand on to each other (default: a temporary directory)
#   BACKUP_BUCKET BACKUP_PREFIX   where "latest" and plain keys are looked up
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the database (libpq variables)
#   WAIT_SECONDS     how long to wait for the database to accept connections (default 300)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

REFUSED=3
step=${RESTORE_STEP:-all}
source=${RESTORE_FROM:?RESTORE_FROM is not set}
request=${RESTORE_REQUEST:-$source}
case "$source$request" in
    *"'"* | *'"'* | *'\'* | *' '*) fail "RESTORE_FROM and RESTORE_REQUEST must not contain quotes, backslashes or spaces" ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' INT TERM
dir=${RESTORE_DIR:-$work}
archive="$dir/restore.dump"
# Written by the check when the database already holds this request's restore.
restored="$dir/already-restored"
marker="labeling-restore: $request"

fetch() {
    if [ -f "$restored" ]; then
        echo "database already holds this restore ($(cat "$restored")): nothing to download"
        return 0
    fi
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
    echo "s3://$bucket/$key" >"$dir/source"
    echo "downloaded s3://$bucket/$key ($(wc -c <"$archive" | tr -d ' ') bytes)"
}

sql() {
    psql --no-psqlrc --no-password --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 "$@"
}

wait_for_database() {
    [ -n "${PGDATABASE:-}" ] || fail "PGDATABASE is not set"
    deadline=$(($(date +%s) + ${WAIT_SECONDS:-300}))
    until pg_isready --quiet; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "database ${PGHOST:-local socket} did not accept connections in time"
        sleep 2
    done
}

# check: returns 0 and sets $already (the marker's source) when the database already
# holds this request's restore; exits 3 when it holds tables and RESTORE_FORCE is
# not "true"; otherwise returns 0 with $tables set (and $already empty).
check() {
    wait_for_database
    current=$(sql -c "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()") ||
        fail "cannot connect to database $PGDATABASE"
    already=""
    case "$current" in
        "$marker "*)
            already=${current#"$marker "}
            echo "database $PGDATABASE already holds this restore ($already): nothing to do"
            return 0
            ;;
    esac
    tables=$(sql -c "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')") ||
        fail "cannot count the tables of database $PGDATABASE"
    if [ "$tables" -gt 0 ] && [ "${RESTORE_FORCE:-false}" != "true" ]; then
        echo "refusing to restore: database $PGDATABASE already holds $tables tables (CVAT data)." >&2
        echo "Nothing was changed. To replace them, set restoreForce to true and run again." >&2
        exit "$REFUSED"
    fi
}

check_step() {
    rm -f "$restored"
    check
    if [ -n "$already" ]; then
        echo "$already" >"$restored"
    elif [ "$tables" -gt 0 ]; then
        echo "database $PGDATABASE holds $tables tables: they will be replaced (RESTORE_FORCE=true)"
    else
        echo "database $PGDATABASE is empty: the backup will be restored into it"
    fi
}

restore() {
    check
    [ -z "$already" ] || return 0
    [ -s "$archive" ] || fail "no backup to restore in $dir (was the fetch step skipped or did it fail?)"
    pg_restore --list "$archive" >/dev/null || fail "$archive is not a readable pg_dump archive"

    resolved=$(cat "$dir/source" 2>/dev/null || echo "$source")
    clean=""
    if [ "$tables" -gt 0 ]; then
        echo "database $PGDATABASE holds $tables tables: replacing them (RESTORE_FORCE=true)"
        clean="--clean --if-exists"
    fi

    # One transaction holds the restore and the marker: either both are in, or
    # nothing changed. If pg_restore fails, the stream ends in an error
    # instead of the marker, and psql rolls everything back.
    # shellcheck disable=SC2086
    {
        if pg_restore --no-owner --no-privileges --role="$PGUSER" $clean --file=- "$archive"; then
            printf 'COMMENT ON DATABASE :"database" IS :%s;\n' "'marker_text'"
        else
            printf '\\echo pg_restore could not read the whole archive\nSELECT 1 / 0;\n'
        fi
    } | sql --single-transaction -v database="$PGDATABASE" -v marker_text="$marker $resolved" >/dev/null ||
        fail "the restore failed; the database was left as it was"
    sql -c "ANALYZE" >/dev/null || true
    echo "restored database $PGDATABASE from $resolved"
}

case "$step" in
    check) check_step ;;
    fetch) fetch ;;
    restore) restore ;;
    all)
        check_step
        fetch
        restore
        ;;
    *) fail "RESTORE_STEP must be check, fetch, restore or all (got '$step')" ;;
esac
