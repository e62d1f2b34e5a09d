#!/bin/sh
# Backs up the workspace's PostgreSQL database to object storage.
#
# BACKUP_STEP chooses what runs:
#   dump    write a pg_dump archive (custom format) into BACKUP_DIR and read it
#           back completely; a broken or empty dump never reaches the bucket
#           (needs pg_dump and pg_restore: the postgres image);
#   upload  upload the archive from BACKUP_DIR, check its size in the bucket, and
#           delete this workspace's backups older than RETENTION_DAYS
#           (needs the AWS CLI: the amazon/aws-cli image);
#   all     both, in one place (the default).
# In the CronJob, "dump" runs in an init container and "upload" in the main
# container; they share BACKUP_DIR. Any failure exits non-zero, so the Job
# shows as failed.
#
# Environment:
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the database (libpq variables)
#   BACKUP_DIR        where the archive waits between the steps (default: a temporary directory)
#   BACKUP_BUCKET     bucket of the backups
#   BACKUP_PREFIX     key prefix of this workspace's backups, e.g. "acme/database/"
#   RETENTION_DAYS    backups under the prefix older than this many days are deleted
#   BACKUP_COMPRESSION  pg_dump's gzip level, 0-9 (default 1: a third of the time of
#                     the default level for dumps ~8% larger, and a shorter snapshot)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

step=${BACKUP_STEP:-all}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' INT TERM
dir=${BACKUP_DIR:-$work}

dump() {
    [ -n "${PGDATABASE:-}" ] || fail "PGDATABASE is not set"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    partial="$dir/$stamp.dump.partial"
    echo "dumping database $PGDATABASE from ${PGHOST:-local socket} ..."
    level=${BACKUP_COMPRESSION:-1}
    case "$level" in
        [0-9]) ;;
        *) fail "BACKUP_COMPRESSION must be a gzip level from 0 to 9 (got '$level')" ;;
    esac
    pg_dump --format=custom --compress="$level" --no-password --file="$partial" || fail "pg_dump failed; nothing was uploaded"
    [ -s "$partial" ] || fail "the dump is empty; nothing was uploaded"
    # Read every entry and data block back: a dump that cannot be restored is not a backup.
    pg_restore --file=/dev/null "$partial" || fail "the dump cannot be read back; nothing was uploaded"
    mv "$partial" "$dir/$stamp.dump"
    echo "dump $stamp.dump: $(wc -c <"$dir/$stamp.dump" | tr -d ' ') bytes, read back completely"
}

upload() {
    bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
    prefix=${BACKUP_PREFIX:?BACKUP_PREFIX is not set}
    days=${RETENTION_DAYS:-}
    case "$days" in
        '' | *[!0-9]* | 0) fail "RETENTION_DAYS must be a whole number of days, at least 1 (got '$days')" ;;
    esac
    s3_cli_setup "$work"
    set -- "$dir"/*.dump
    [ -f "$1" ] || fail "no finished dump in $dir; nothing was uploaded"
    [ $# -eq 1 ] || fail "more than one dump in $dir: $*"
    file=$1
    key="$prefix$(basename "$file")"
    size=$(wc -c <"$file" | tr -d ' ')
    aws s3 cp "$file" "s3://$bucket/$key" --only-show-errors --no-progress ||
        fail "cannot upload to s3://$bucket/$key"
    # One listing checks the upload and finds the backups to expire.
    backup_list "$bucket" "$prefix" "$work/backups"
    stored=""
    while read -r name bytes; do
        [ "$name" != "$(basename "$file")" ] || stored=$bytes
    done <"$work/backups"
    [ "$stored" = "$size" ] || fail "s3://$bucket/$key holds '$stored' bytes after the upload, the dump has $size"
    echo "uploaded s3://$bucket/$key ($size bytes)"
    expire "$bucket" "$prefix" "$days" "$work/backups"
}

# expire BUCKET PREFIX DAYS LIST: deletes the backups of LIST (from backup_list)
# named for a time more than DAYS days ago. Other objects, and other prefixes,
# are left alone.
expire() {
    now=$(date -u +%s)
    then=$((now - $3 * 86400))
    cutoff=$(date -u -d "@$then" +%Y%m%d%H%M%S 2>/dev/null || date -u -r "$then" +%Y%m%d%H%M%S)
    deleted=0
    while read -r name _; do
        digits=$(echo "${name%.dump}" | tr -d 'TZ')
        if [ "$digits" -lt "$cutoff" ]; then
            aws s3api delete-object --bucket "$1" --key "$2$name" >/dev/null || fail "cannot delete s3://$1/$2$name"
            echo "deleted s3://$1/$2$name (older than $3 days)"
            deleted=$((deleted + 1))
        fi
    done <"$4"
    echo "retention: $deleted backup(s) older than $3 days deleted"
}

case "$step" in
    dump) dump ;;
    upload) upload ;;
    all)
        dump
        upload
        ;;
    *) fail "BACKUP_STEP must be dump, upload or all (got '$step')" ;;
esac
