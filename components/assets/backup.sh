#!/bin/sh
# Backs up the workspace to object storage: the PostgreSQL database (a pg_dump
# archive), and with data-backup.sh a restic snapshot of CVAT's data volume; the
# manifest that makes them one backup is written last (docs/backups.md).
#
# BACKUP_STEP chooses what runs:
#   dump      (postgres image) write a pg_dump archive (custom format) into BACKUP_DIR
#             and check its table of contents; with BACKUP_SKIP_EMPTY=true a database
#             without tables is not backed up at all (a new workspace);
#   password  (AWS CLI image) fetch the data repository's password into SECRET_DIR
#             (generated and stored at <key>/data-password by the first backup);
#   upload    (AWS CLI image) upload the archive under .incoming/, verify its size and
#             checksum there, copy it to its final name with its SHA-256 as metadata,
#             write the manifest, then apply the retention;
#   all       dump and upload in one place (the default; no data volume).
# In the backup Jobs: dump, password, data-backup.sh backup, upload run one after the
# other (init containers) and data-backup.sh prune last. They share BACKUP_DIR. Any
# failure exits non-zero and leaves nothing that looks like a backup: an upload
# that fails verification is deleted, and a backup exists only once its manifest
# does.
#
# Several runs may overlap (`backups now` or the pre-upgrade Job beside the CronJob), in
# the same second too: each backup's stamp has a random suffix (YYYYMMDDTHHMMSSZ-xxxxxxxx),
# its final names are written only where nothing is (If-None-Match: *, where the server
# implements it; a HEAD request first), every object a run writes carries its run id
# (metadata backup-run), and a run that stops deletes only objects it wrote. Backups are
# dated by the server's time of their manifest (LastModified), not by their stamp (a pod's
# clock may be wrong): retention goes by it, as `latest` does.
#
# Environment:
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the database (libpq variables)
#   BACKUP_DIR        what the steps hand on to each other (default: a temporary directory)
#   BACKUP_BUCKET     bucket of the backups
#   BACKUP_PREFIX     key prefix of this workspace's dumps, "<key>/database/"
#   BACKUP_REASON     scheduled (default), before-upgrade, final or manual: goes into the manifest
#   BACKUP_DATA       "true" when a data snapshot is part of the backup (data-backup.sh ran)
#   BACKUP_SKIP_EMPTY "true": a database without tables is not backed up (exit 0)
#   BACKUP_WAIT_IDLE_SECONDS  dump: wait up to this many seconds (0-3600, default 0: no wait)
#                     until no other client is connected to PGDATABASE, then end those left
#                     (the final backup of a pause: CVAT's pods may still be stopping)
#   CVAT_VERSION      the CVAT release whose schema the database holds (into the manifest)
#   RETENTION_DAYS    backups older than this many days are deleted (1-3650), but never
#                     the newest 3 good ones nor the one just made
#   BACKUP_COMPRESSION  pg_dump's gzip level, 0-9 (default 1: a third of the time of
#                     the default level for dumps ~8% larger, and a shorter snapshot)
#   SECRET_DIR        where the password step writes data-password (default: BACKUP_DIR)
#   READ_ATTEMPTS     how many times a read of retention that fails in transfer is tried (default 3)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

MAX_RETENTION_DAYS=3650
KEEP_NEWEST=3
# The longest idle wait: well inside the backup Jobs' deadline (2 h), which must leave
# time for the dump itself.
MAX_WAIT_IDLE_SECONDS=3600
# Dumps below this size are uploaded in one request (its MD5 checked by the server and
# answered as its ETag); larger ones in parts, then checked with a HEAD request.
SINGLE_PUT_BYTES=${SINGLE_PUT_BYTES:-536870912}
step=${BACKUP_STEP:-all}
work=$(mktemp -d)
# Objects to delete if the script stops before the backup is complete: only ever objects
# this run wrote itself (see upload).
pending=""
deleting=""
cleanup() {
    status=$?
    trap - EXIT
    # The deletion of this run's upload, when it started, ends first.
    [ -z "${deleting:-}" ] || wait "$deleting" 2>/dev/null || true
    for key in $pending; do
        aws s3api delete-object --bucket "$bucket" --key "$key" >/dev/null 2>&1 &&
            echo "deleted s3://$bucket/$key (the backup did not complete)" >&2
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' INT TERM
dir=${BACKUP_DIR:-$work}
bucket=""

# The other client sessions of this database: background processes (autovacuum, walsender)
# are not clients, and this session is not another one. A session is shown by its pid,
# application name and address, never by its query (it may hold data).
OTHER_SESSIONS="FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
SESSION="format('pid %s (%s from %s)', pid, coalesce(nullif(application_name, ''), 'no application name'), coalesce(host(client_addr), 'the local socket'))"

# sessions DESCRIPTION: "COUNT DESCRIPTIONS" of the other sessions, one line. Fails when
# psql does (the database cannot be reached).
sessions() {
    psql --no-psqlrc --no-password --quiet --tuples-only --no-align --field-separator=' ' -c \
        "SELECT count(*), coalesce(string_agg($1, ', ' ORDER BY pid), '') $OTHER_SESSIONS"
}

# wait_idle SECONDS: waits until no other client is connected to the database, so that a
# final backup holds the last writes of CVAT (Pulumi reports its Deployments scaled to zero
# while their pods are still stopping). Sessions left after SECONDS are ended: by then
# CVAT's pods are gone (their grace period is far shorter), so what remains is stale, and
# writes it made after the dump would be in no backup.
wait_idle() {
    limit=$1
    [ "$limit" -gt 0 ] || return 0
    started=$(date +%s)
    shown=""
    while :; do
        found=$(sessions "$SESSION") || fail "cannot connect to database $PGDATABASE to list its sessions; nothing was dumped"
        count=${found%% *}
        waited=$(($(date +%s) - started))
        if [ "$count" -eq 0 ]; then
            [ -z "$shown" ] || echo "no other session on database $PGDATABASE after ${waited}s"
            return 0
        fi
        [ "$waited" -lt "$limit" ] || break
        # Logged when the sessions change, not at every poll.
        if [ "$found" != "$shown" ]; then
            echo "waiting up to ${limit}s for $count other session(s) on database $PGDATABASE to close: ${found#* }"
            shown=$found
        fi
        sleep 2
    done
    # Listed and ended in one statement: a session that closed meanwhile is not named.
    # pg_terminate_backend waits up to 5 s for each to end (false if it has not).
    ended=$(sessions "$SESSION || CASE WHEN pg_terminate_backend(pid, 5000) THEN '' ELSE ' (did not end within 5 s)' END") ||
        fail "cannot end the sessions left on database $PGDATABASE; nothing was dumped"
    if [ "${ended%% *}" -eq 0 ]; then
        echo "the last sessions on database $PGDATABASE closed after ${waited}s"
    else
        echo "ended ${ended%% *} session(s) still on database $PGDATABASE after ${waited}s: ${ended#* }"
    fi
}

dump() {
    [ -n "${PGDATABASE:-}" ] || fail "PGDATABASE is not set"
    wait_seconds=${BACKUP_WAIT_IDLE_SECONDS:-0}
    case "$wait_seconds" in
        '' | *[!0-9]* | 0?*) fail "BACKUP_WAIT_IDLE_SECONDS must be a whole number of seconds from 0 to $MAX_WAIT_IDLE_SECONDS (got '$wait_seconds')" ;;
    esac
    [ "${#wait_seconds}" -le 4 ] && [ "$wait_seconds" -le "$MAX_WAIT_IDLE_SECONDS" ] ||
        fail "BACKUP_WAIT_IDLE_SECONDS must be a whole number of seconds from 0 to $MAX_WAIT_IDLE_SECONDS (got '$wait_seconds')"
    rm -f "$dir/skip"
    # Before anything is read: whether the database has tables may change until CVAT stops.
    wait_idle "$wait_seconds"
    if [ "${BACKUP_SKIP_EMPTY:-false}" = true ]; then
        tables=$(psql --no-psqlrc --no-password --quiet --tuples-only --no-align -c \
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')") ||
            fail "cannot connect to database $PGDATABASE"
        if [ "$tables" -eq 0 ]; then
            echo "database $PGDATABASE holds no tables yet: nothing to back up"
            : >"$dir/skip"
            return 0
        fi
    fi
    stamp=$(new_stamp)
    is_stamp "$stamp" || fail "cannot make a backup stamp (got '$stamp')"
    partial="$dir/$stamp.dump.partial"
    echo "dumping database $PGDATABASE from ${PGHOST:-local socket} ..."
    level=${BACKUP_COMPRESSION:-1}
    case "$level" in
        [0-9]) ;;
        *) fail "BACKUP_COMPRESSION must be a gzip level from 0 to 9 (got '$level')" ;;
    esac
    pg_dump --format=custom --compress="$level" --no-password --file="$partial" || fail "pg_dump failed; nothing was uploaded"
    [ -s "$partial" ] || fail "the dump is empty; nothing was uploaded"
    # The table of contents names every object and data block: an archive whose TOC
    # cannot be read is not a backup. The bytes themselves are proven by the checksum
    # that travels with them (upload) and is checked before any restore.
    pg_restore --list "$partial" >"$work/toc" || fail "the dump cannot be read back; nothing was uploaded"
    grep -q '^[0-9]' "$work/toc" || fail "the dump lists no objects; nothing was uploaded"
    mv "$partial" "$dir/$stamp.dump"
    echo "$stamp" >"$dir/stamp"
    echo "dump $stamp.dump: $(wc -c <"$dir/$stamp.dump" | tr -d ' ') bytes, $(grep -c '^[0-9]' "$work/toc") entries"
}

# workspace_root: "<key>/" from BACKUP_PREFIX "<key>/database/".
workspace_root() {
    prefix=${BACKUP_PREFIX:?BACKUP_PREFIX is not set}
    case "$prefix" in
        */database/) root=${prefix%database/} ;;
        *) fail "BACKUP_PREFIX must end with /database/ (got '$prefix')" ;;
    esac
    case "$prefix" in
        /* | *//* | *' '* | *'"'* | *"'"* | *'\'*) fail "BACKUP_PREFIX must be a plain key prefix (got '$prefix')" ;;
    esac
}

password() {
    bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
    workspace_root
    s3_cli_setup "$work"
    out=${SECRET_DIR:-$dir}/data-password
    key="${root}data-password"
    rm -f "$dir/data-repository-exists"
    # One listing answers both questions: "<key>/data-password" sorts right before
    # "<key>/data/config", the first object of a restic repository.
    aws s3api list-objects-v2 --bucket "$bucket" --prefix "${root}data" --max-items 2 --page-size 2 \
        --query 'Contents[].Key' --output text >"$work/found" || fail "cannot list s3://$bucket/${root}data"
    found=$(cat "$work/found")
    case " $found " in *[[:space:]]"${root}data/config"[[:space:]]*) : >"$dir/data-repository-exists" ;; esac
    case " $found " in
        *[[:space:]]"$key"[[:space:]]*) ;;
        *)
            [ ! -f "$dir/data-repository-exists" ] ||
                fail "s3://$bucket/${root}data holds a repository but its password $key is missing; restore it from a copy (it cannot be regenerated)"
            echo "no data repository yet: generating its password at s3://$bucket/$key"
            (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/new-password")
            # Never replace a password that appeared meanwhile (where the server honours If-None-Match;
            # one that does not implement it gets a plain write).
            if ! aws s3api put-object --bucket "$bucket" --key "$key" --body "$work/new-password" --if-none-match '*' \
                >/dev/null 2>"$work/err"; then
                if grep -q 'PreconditionFailed\|ConditionalRequestConflict' "$work/err"; then
                    echo "another backup stored the password first: using it"
                elif grep -q 'NotImplemented\|InvalidArgument\|InvalidRequest\|(501)' "$work/err"; then
                    aws s3api put-object --bucket "$bucket" --key "$key" --body "$work/new-password" >/dev/null 2>"$work/err" ||
                        fail "cannot store s3://$bucket/$key: $(cat "$work/err")"
                else
                    fail "cannot store s3://$bucket/$key: $(cat "$work/err")"
                fi
            fi
            ;;
    esac
    # Always the stored one: if two first backups raced, both use the one that won.
    (umask 077 && aws s3api get-object --bucket "$bucket" --key "$key" "$out" >/dev/null) ||
        fail "cannot read s3://$bucket/$key"
    [ -s "$out" ] || fail "s3://$bucket/$key is empty"
    echo "data repository password ready ($([ -f "$dir/data-repository-exists" ] && echo existing || echo new) repository)"
}

# upload_settings: checks what the upload needs (before anything is dumped, in "all").
upload_settings() {
    bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
    workspace_root
    days=${RETENTION_DAYS:-}
    case "$days" in
        '' | *[!0-9]* | 0*) fail "RETENTION_DAYS must be a whole number of days from 1 to $MAX_RETENTION_DAYS (got '$days')" ;;
    esac
    [ "${#days}" -le 4 ] && [ "$days" -le "$MAX_RETENTION_DAYS" ] ||
        fail "RETENTION_DAYS must be a whole number of days from 1 to $MAX_RETENTION_DAYS (got '$days')"
    reason=${BACKUP_REASON:-scheduled}
    case "$reason" in
        scheduled | before-upgrade | final | manual) ;;
        *) fail "BACKUP_REASON must be scheduled, before-upgrade, final or manual (got '$reason')" ;;
    esac
    version=${CVAT_VERSION:-unknown}
    case "$version" in
        '' | *[!A-Za-z0-9._+-]*) fail "CVAT_VERSION must be a release name such as v2.73.0 (got '$version')" ;;
    esac
    workspace=${root%/}
}

# name_taken ERRORS: whether a conditional write failed because the name is taken.
name_taken() {
    grep -q 'PreconditionFailed\|ConditionalRequestConflict\|(412)' "$1"
}

# condition_unknown ERRORS: whether the server refused If-None-Match itself (it does not
# implement conditional writes): the write is made again without it.
condition_unknown() {
    grep -q 'NotImplemented\|InvalidArgument\|InvalidRequest\|(501)' "$1"
}

# ours KEY: whether the object KEY carries this run's id (a write of this run that the client
# retried: the retry found the name taken by the first attempt).
ours() {
    [ "$(aws s3api head-object --bucket "$bucket" --key "$1" --query 'Metadata."backup-run"' --output text 2>/dev/null)" = "$run" ]
}

# taken KEY: stops the run, leaving KEY (another run's) as it is.
taken() {
    drop_pending "$1"
    fail "s3://$bucket/$1 exists already: another backup has the stamp $stamp; it is left as it is and this run stops"
}

# absent KEY: fails unless KEY does not exist (a final name is never written over).
absent() {
    answer=0
    head_fields "$bucket" "$1" '[ContentLength]' || answer=$?
    case "$answer" in
        2) return 0 ;;
        0) taken "$1" ;;
        *) fail "cannot check that s3://$bucket/$1 does not exist: $(cat "$work/err")" ;;
    esac
}

# drop_pending KEY: KEY is not this run's to delete.
drop_pending() {
    kept=""
    for k in $pending; do [ "$k" = "$1" ] || kept="$kept $k"; done
    pending=${kept# }
}

# put_new KEY FILE ARGS...: put-object of FILE to KEY, with this run's id, only if KEY does
# not exist (If-None-Match; a server that does not implement it gets a plain write); the
# ETag the server answers goes to $work/put. Stops without touching KEY when another run has it.
put_new() {
    key_=$1 file_=$2
    shift 2
    aws s3api put-object --bucket "$bucket" --key "$key_" --body "$file_" --metadata "backup-run=$run" "$@" \
        --if-none-match '*' --query ETag --output text >"$work/put" 2>"$work/err" && return 0
    if name_taken "$work/err"; then
        # A retry of this very request (its first attempt was stored, the answer lost)?
        ours "$key_" || taken "$key_"
        aws s3api head-object --bucket "$bucket" --key "$key_" --query ETag --output text >"$work/put" ||
            fail "cannot read s3://$bucket/$key_ after writing it"
        return 0
    fi
    condition_unknown "$work/err" || fail "cannot upload to s3://$bucket/$key_: $(cat "$work/err")"
    # Without conditional writes: a HEAD request first.
    absent "$key_"
    aws s3api put-object --bucket "$bucket" --key "$key_" --body "$file_" --metadata "backup-run=$run" "$@" \
        --query ETag --output text >"$work/put" || fail "cannot upload to s3://$bucket/$key_"
}

# copy_new: copies the verified upload to the final name $key, with the dump's SHA-256 and
# this run's id as metadata, only if the name is free (If-None-Match where the server
# implements it for copies) and only if the source still has the verified ETag (where the
# server supports it). The ETag of the copy goes to $work/copied.
copy_new() {
    set -- --if-none-match '*'
    while :; do
        aws s3api copy-object --bucket "$bucket" --key "$key" --copy-source "$bucket/$incoming" \
            --copy-source-if-match "$stored_etag" --metadata "sha256=$sha256,backup-run=$run" --metadata-directive REPLACE \
            --content-type application/octet-stream "$@" --query CopyObjectResult.ETag --output text \
            >"$work/copied" 2>"$work/err" && return 0
        if name_taken "$work/err"; then
            # The source's ETag condition, or the name taken: by this very request's first
            # attempt, or by another run (left as it is).
            answer=0
            head_fields "$bucket" "$key" '[ContentLength]' || answer=$?
            [ "$answer" -ne 2 ] || fail "s3://$bucket/$incoming changed after it was verified; deleted, nothing is visible"
            ours "$key" || taken "$key"
            aws s3api head-object --bucket "$bucket" --key "$key" --query ETag --output text >"$work/copied" ||
                fail "cannot read s3://$bucket/$key after the copy"
            return 0
        fi
        [ $# -gt 0 ] && condition_unknown "$work/err" || fail "cannot copy s3://$bucket/$incoming to $key: $(cat "$work/err")"
        set --
    done
}

upload() {
    upload_settings
    s3_cli_setup "$work"
    if [ -f "$dir/skip" ]; then
        echo "nothing to upload (the database held no tables)"
        return 0
    fi
    set -- "$dir"/*.dump
    [ -f "$1" ] || fail "no finished dump in $dir; nothing was uploaded"
    [ $# -eq 1 ] || fail "more than one dump in $dir: $*"
    file=$1
    stamp=$(basename "$file" .dump)
    is_stamp "$stamp" || fail "unexpected dump name $file"
    key="$prefix$stamp.dump"
    incoming="$prefix.incoming/$stamp.dump"
    manifest_key="${root}backups/$stamp.json"
    size=$(wc -c <"$file" | tr -d ' ')
    # This run's id, on every object it writes: what tells its objects from another run's.
    run="$stamp-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

    data_json=null
    if [ "${BACKUP_DATA:-false}" = true ]; then
        [ -f "$dir/data-snapshot" ] || fail "no data snapshot in $dir (did data-backup.sh run?); nothing was uploaded"
        snapshot=$(sed -n 's/^snapshot //p' "$dir/data-snapshot")
        files=$(sed -n 's/^files //p' "$dir/data-snapshot")
        bytes=$(sed -n 's/^bytes //p' "$dir/data-snapshot")
        case "$snapshot" in '' | *[!0-9a-f]*) fail "bad snapshot id '$snapshot' in $dir/data-snapshot" ;; esac
        case "$files$bytes" in '' | *[!0-9]*) fail "bad counts in $dir/data-snapshot" ;; esac
        if ! is_hex64 "$snapshot"; then
            # A short id (restic before 0.15): the snapshot's file in the repository has the full one.
            list_keys "$bucket" "${root}data/snapshots/$snapshot" "$work/snapshot-keys"
            [ "$(wc -l <"$work/snapshot-keys")" -eq 1 ] || fail "snapshot $snapshot is not (or not once) in s3://$bucket/${root}data"
            snapshot=$(sed 's|.*/||; s/[[:space:]].*//' "$work/snapshot-keys")
            is_hex64 "$snapshot" || fail "bad snapshot file in s3://$bucket/${root}data/snapshots/"
        fi
        data_json="{\"repository\": \"${root}data\", \"snapshot\": \"$snapshot\", \"files\": $files, \"bytes\": $bytes}"
    fi

    # What retention needs is listed while the dump uploads (not the data repository's objects).
    (list_keys "$bucket" "${root}backups/" "$work/listing.manifests" && list_keys "$bucket" "$prefix" "$work/listing.dumps" &&
        cat "$work/listing.manifests" "$work/listing.dumps" >"$work/listing") 2>"$work/listing.err" &
    listing=$!
    # From here on, pending names only objects this run wrote (its stamp is its own; a name
    # found taken is left alone).
    if [ "$size" -lt "$SINGLE_PUT_BYTES" ]; then
        # One request; the ETag the server answers is the MD5 it computed over the bytes it
        # stored, so one equal to the dump's proves the upload. Both checksums are computed
        # meanwhile, from the page cache.
        (md5_of "$file" >"$work/md5" && sha256_of "$file" >"$work/sha256") &
        hashing=$!
        pending=$incoming
        put_new "$incoming" "$file"
        stored_etag=$(tr -d '"' <"$work/put")
        wait "$hashing" || fail "cannot compute the checksums of $file"
        etag=$(cat "$work/md5")
    else
        # In parts; the server's size and ETag (the MD5 of the parts' MD5s) prove the upload.
        (md5_of "$file" >"$work/md5" && sha256_of "$file" >"$work/sha256" && expected_etag "$file" "$work" >"$work/etag") &
        hashing=$!
        absent "$incoming"
        pending=$incoming
        aws s3 cp "$file" "s3://$bucket/$incoming" --metadata "backup-run=$run" --only-show-errors --no-progress ||
            fail "cannot upload to s3://$bucket/$incoming"
        wait "$hashing" || fail "cannot compute the checksums of $file"
        etag=$(cat "$work/etag")
        aws s3api head-object --bucket "$bucket" --key "$incoming" --query '[ContentLength, ETag]' --output text \
            >"$work/head" || fail "cannot read s3://$bucket/$incoming after the upload"
        read -r stored stored_etag <"$work/head"
        stored_etag=$(echo "$stored_etag" | tr -d '"')
        [ "$stored" = "$size" ] ||
            fail "s3://$bucket/$incoming holds $stored bytes after the upload, the dump has $size; deleted, nothing is visible"
    fi
    sha256=$(cat "$work/sha256")
    md5=$(cat "$work/md5")
    is_hex64 "$sha256" || fail "bad SHA-256 of $file"
    if [ "$stored_etag" != "$etag" ]; then
        # A server whose ETags are not MD5s (KMS encryption), or bytes that differ: read them back.
        echo "the ETag of s3://$bucket/$incoming is not the dump's MD5 ($stored_etag): reading it back to compare"
        aws s3 cp "s3://$bucket/$incoming" "$work/readback" --only-show-errors --no-progress ||
            fail "cannot read back s3://$bucket/$incoming"
        [ "$(sha256_of "$work/readback")" = "$sha256" ] ||
            fail "s3://$bucket/$incoming does not hold the bytes of the dump (SHA-256 differs); deleted, nothing is visible"
        rm -f "$work/readback"
    fi

    # The final name, by a copy on the server, never over an object that is there: a HEAD
    # request first (for servers that ignore If-None-Match on copies), then copy_new. The ETag
    # of the copy is checked too.
    absent "$key"
    pending="$incoming $key"
    if [ "$size" -lt 5368709120 ]; then
        copy_new
        copied=$(tr -d '"' <"$work/copied")
        # The MD5 of what the copy holds, or (on servers that keep parts) the source's ETag.
        [ "$copied" = "$md5" ] || [ "$copied" = "$stored_etag" ] ||
            fail "the copy s3://$bucket/$key has ETag $copied, not the dump's; deleted, nothing is visible"
    else
        # Above 5 GiB a copy takes parts (the CLI makes them); its size and metadata are checked.
        aws s3 cp "s3://$bucket/$incoming" "s3://$bucket/$key" --metadata "sha256=$sha256,backup-run=$run" --metadata-directive REPLACE \
            --only-show-errors --no-progress || fail "cannot copy s3://$bucket/$incoming to $key"
        aws s3api head-object --bucket "$bucket" --key "$key" --query '[ContentLength, Metadata.sha256]' --output text \
            >"$work/head" || fail "cannot read s3://$bucket/$key after the copy"
        [ "$(cat "$work/head")" = "$(printf '%s\t%s' "$size" "$sha256")" ] ||
            fail "the copy s3://$bucket/$key does not match the dump; deleted, nothing is visible"
    fi
    (aws s3api delete-object --bucket "$bucket" --key "$incoming" >/dev/null 2>&1 ||
        echo "warning: cannot delete s3://$bucket/$incoming (the lifecycle rule expires it)" >&2) &
    deleting=$!
    pending=$key
    echo "stored s3://$bucket/$key ($size bytes, sha256 $sha256)"

    # The manifest, last: the backup exists once it does.
    cat >"$work/manifest.json" <<MANIFEST
{
  "format": 1,
  "stamp": "$stamp",
  "workspace": "$workspace",
  "cvatVersion": "$version",
  "reason": "$reason",
  "database": {"key": "$key", "size": $size, "sha256": "$sha256"},
  "data": $data_json
}
MANIFEST
    pending="$manifest_key $key"
    put_new "$manifest_key" "$work/manifest.json" --content-type application/json
    if [ "$(tr -d '"' <"$work/put")" != "$(md5_of "$work/manifest.json")" ]; then
        aws s3 cp "s3://$bucket/$manifest_key" "$work/manifest.readback" --only-show-errors --no-progress &&
            cmp -s "$work/manifest.json" "$work/manifest.readback" ||
            fail "the manifest s3://$bucket/$manifest_key does not hold what was written"
    fi
    pending=""
    echo "backup $stamp complete: s3://$bucket/$manifest_key ($reason, CVAT $version)"
    wait "$deleting" || true

    wait "$listing" ||
        fail "the backup is complete, but listing s3://$bucket/$root failed, so no old backup was deleted: $(cat "$work/listing.err")"
    # The server's time of the manifest: "now" for the retention, whatever the pod's clock says.
    (list_keys "$bucket" "$manifest_key" "$work/own") 2>"$work/listing.err" ||
        fail "the backup is complete, but reading the server's time of s3://$bucket/$manifest_key failed, so no old backup was deleted: $(cat "$work/listing.err")"
    now=$(awk -v k="$manifest_key" '$1 == k { print $3 }' "$work/own")
    [ -n "$now" ] ||
        fail "the backup is complete, but s3://$bucket/$manifest_key is not listed, so no old backup was deleted"
    # This pod's clock now against the server's time of the manifest it just wrote: both are the
    # end of the backup, so however long it ran, they agree within the tolerance.
    problem=$(clock_problem "$(date -u +%Y%m%dT%H%M%SZ)" "$now" 0)
    if [ -n "$problem" ]; then
        echo "warning: CLOCK: backup $stamp: this pod's clock is $problem; backups are ordered and aged by the server's time" >&2
    fi
    retention
}

# manifest_good STAMP: whether the backup of STAMP is good (docs/backups.md): its manifest
# parses, its dump exists with the manifest's size and SHA-256, its snapshot exists. Returns
# 0 (good), 2 (not good: the server said so) or 1 (a read failed: $work/err). Leaves the
# manifest in $work/m-STAMP.json.
manifest_good() {
    m="$work/m-$1.json"
    answer=0
    get_whole "$bucket" "${root}backups/$1.json" "$m" "$(listed_size "${root}backups/$1.json")" || answer=$?
    [ "$answer" -eq 0 ] || return "$answer"
    [ "$(manifest_field "$m" format)" = 1 ] && [ "$(manifest_field "$m" stamp)" = "$1" ] || return 2
    mkey=$(manifest_field "$m" key)
    msize=$(manifest_field "$m" size)
    msha=$(manifest_field "$m" sha256)
    [ -n "$mkey" ] && [ -n "$msize" ] && is_hex64 "$msha" || return 2
    [ "$(listed_size "$mkey")" = "$msize" ] || return 2
    snap=$(manifest_field "$m" snapshot)
    if [ -n "$snap" ]; then
        repo=$(manifest_field "$m" repository)
        answer=0
        head_fields "$bucket" "$repo/snapshots/$snap" '[ContentLength]' || answer=$?
        [ "$answer" -eq 0 ] || return "$answer"
    fi
    answer=0
    head_fields "$bucket" "$mkey" '[ContentLength, Metadata.sha256]' || answer=$?
    [ "$answer" -eq 0 ] || return "$answer"
    # Not good once a second HEAD request says the same.
    [ "$(cut -f2 "$work/head")" = "$msha" ] || head_again "$bucket" "$mkey" '[ContentLength, Metadata.sha256]'
}

# listed_size KEY: the size of KEY in the listing, empty when it is not there.
listed_size() {
    awk -v k="$1" '$1 == k { print $2; exit }' "$work/listing"
}

# delete_batches WHY: deletes the keys of $work/delete-first (manifests), then those of
# $work/delete-after ("MANIFEST KEY" lines: KEY goes only once MANIFEST is gone; "-" for a
# key that waits for nothing), with DeleteObjects, a thousand keys a request: each request
# takes the manifests left first, then fills up with the keys whose turn has come. Logs each
# key deleted; sets requests. Stops at the first request that fails.
delete_batches() {
    awk '$1 == "-" { print $2 }' "$work/delete-after" >"$work/ready"
    awk '$1 != "-"' "$work/delete-after" >"$work/waiting"
    cp "$work/delete-first" "$work/todo"
    requests=0
    while [ -s "$work/todo" ] || [ -s "$work/ready" ]; do
        head -n 1000 "$work/todo" >"$work/batch"
        tail -n +1001 "$work/todo" >"$work/todo.rest"
        mv "$work/todo.rest" "$work/todo"
        room=$((1000 - $(wc -l <"$work/batch")))
        if [ "$room" -gt 0 ]; then
            head -n "$room" "$work/ready" >>"$work/batch"
            tail -n +$((room + 1)) "$work/ready" >"$work/ready.rest"
            mv "$work/ready.rest" "$work/ready"
        fi
        awk 'BEGIN { printf "{\"Quiet\": true, \"Objects\": [" }
             { printf "%s{\"Key\": \"%s\"}", (NR > 1 ? ", " : ""), $0 }
             END { print "]}" }' "$work/batch" >"$work/batch.json"
        requests=$((requests + 1))
        aws s3api delete-objects --bucket "$bucket" --delete "file://$work/batch.json" --query 'Errors[].[Key, Code]' \
            --output text >"$work/batch.errors" || fail "cannot delete old backups (request $requests failed); nothing more was deleted"
        grep -v '^None$' "$work/batch.errors" >"$work/batch.failed" || true
        [ ! -s "$work/batch.failed" ] || fail "cannot delete: $(head -n 5 "$work/batch.failed"); nothing more was deleted"
        while read -r k; do echo "deleted s3://$bucket/$k ($1)"; done <"$work/batch"
        # What waited for a manifest of this request may go in the next one.
        awk -v ready="$work/ready" 'FILENAME == ARGV[1] { gone[$1]; next } ($1 in gone) { print $2 >> ready; next } { print }' \
            "$work/batch" "$work/waiting" >"$work/waiting.rest"
        mv "$work/waiting.rest" "$work/waiting"
    done
    [ ! -s "$work/waiting" ] || fail "internal error: keys left to delete: $(head -n 3 "$work/waiting")"
}

# retention: deletes the backups older than RETENTION_DAYS, whole (manifest first, then
# its dump; its data snapshot is forgotten by data-backup.sh prune), but never the one
# just made, and always keeps the newest KEEP_NEWEST good ones whatever their age. A
# backup's age and order are the server's time of its manifest (LastModified; "now" is that
# of the manifest just written), the stamp breaking ties: a pod clock that is wrong, now or
# when a backup was made, neither deletes a backup early nor keeps one forever. Dumps without
# a manifest (older layouts) follow the same rule among themselves, by their own
# LastModified. Uploads abandoned under .incoming/ for a day are deleted. Nothing else is
# touched, and nothing at all when a read fails. Writes the stamps of the backups that
# remain to BACKUP_DIR/keep-stamps (their data snapshots stay).
retention() {
    now_epoch=$(epoch_of "$now")
    cutoff=$(stamp_at $((now_epoch - days * 86400)))
    stale=$(stamp_at $((now_epoch - 86400)))
    # "STORED STAMP" of the manifests, newest first (this run's: the server's time of it).
    awk -v b="${root}backups/" -v own="$stamp" -v now="$now" -v re="$STAMP_RE" '
        index($1, b) == 1 && $1 ~ /\.json$/ {
            n = substr($1, length(b) + 1); sub(/\.json$/, "", n)
            if (n ~ re && n != own) print $3, n
        }
        END { print now, own }' "$work/listing" | LC_ALL=C sort -r >"$work/manifests"
    # "STORED STAMP SIZE" of the dumps under their final names, newest first; "STORED STAMP
    # KEY" of the uploads under .incoming/.
    awk -v p="$prefix" -v re="$STAMP_RE" -v incoming="$work/incoming" '
        index($1, p) == 1 && $1 ~ /\.dump$/ {
            n = substr($1, length(p) + 1); sub(/\.dump$/, "", n)
            if (n ~ re) print $3, n, $2
            else if (index(n, ".incoming/") == 1 && substr(n, 11) ~ re) print $3, substr(n, 11), $1 > incoming
        }' "$work/listing" | LC_ALL=C sort -r >"$work/dumps"
    [ -f "$work/incoming" ] || : >"$work/incoming"
    : >"$work/keep"
    : >"$work/delete-first"
    : >"$work/delete-after"
    : >"$work/gone"

    # Whole backups (with a manifest). Their goodness is read only when one is old enough to go.
    if awk -v c="$cutoff" -v own="$stamp" '$2 != own && $1 < c { found = 1 } END { exit !found }' "$work/manifests"; then
        echo "$stamp" >"$work/keep"
        good=1
        while read -r stored s; do
            [ "$good" -lt "$KEEP_NEWEST" ] || break
            [ "$s" != "$stamp" ] || continue
            answer=0
            attempt "the manifest of backup $s" manifest_good "$s" || answer=$?
            case "$answer" in
                0)
                    echo "$s" >>"$work/keep"
                    good=$((good + 1))
                    ;;
                2) ;;
                *) fail "cannot read backup $s to tell whether it is good: $(tail -n 1 "$work/err"); no old backup was deleted" ;;
            esac
        done <"$work/manifests"
        # The old ones not kept go, each with its own dump (a manifest names its own; anything
        # else is left alone).
        awk -v c="$cutoff" -v own="$stamp" -v b="${root}backups/" -v p="$prefix" -v first="$work/delete-first" -v gone="$work/gone" '
            FILENAME == ARGV[1] { keep[$1]; next }
            FILENAME == ARGV[2] { dump[$2]; next }
            $2 != own && $1 < c && !($2 in keep) {
                print b $2 ".json" > first
                print $2 > gone
                if ($2 in dump) print b $2 ".json", p $2 ".dump"
            }' "$work/keep" "$work/dumps" "$work/manifests" >>"$work/delete-after"
    fi
    deleted=$(wc -l <"$work/gone" | tr -d ' ')

    # Dumps without a manifest (older layouts, or a run that stopped before its manifest):
    # the newest KEEP_NEWEST that hold something stay.
    awk -v c="$cutoff" -v keep="$KEEP_NEWEST" -v p="$prefix" '
        FILENAME == ARGV[1] { listed[$2]; next }
        ($2 in listed) { next }
        kept < keep && $3 != 0 { kept++; next }
        $1 < c { print "-", p $2 ".dump" }' "$work/manifests" "$work/dumps" >"$work/delete-lone"
    deleted=$((deleted + $(wc -l <"$work/delete-lone" | tr -d ' ')))
    cat "$work/delete-lone" >>"$work/delete-after"

    # Uploads abandoned for over a day (this run's is gone already; another run's is younger).
    awk -v s="$stale" -v own="$stamp" '$2 != own && $1 < s { print "-", $3 }' "$work/incoming" >>"$work/delete-after"

    flagged=$(awk -v tol="$CLOCK_TOLERANCE_SECONDS" -v run="$LONGEST_BACKUP_SECONDS" "$AWK_TIMES"'
        function epoch(st) {
            return days(substr(st, 1, 4) + 0, substr(st, 5, 2) + 0, substr(st, 7, 2) + 0) * 86400 \
                + substr(st, 10, 2) * 3600 + substr(st, 12, 2) * 60 + substr(st, 14, 2)
        }
        { d = epoch($2) - epoch($1); if (d > tol || -d > tol + run) { n++; if (n <= 5) names = names " " $2 } }
        END { if (n) print n ":" names }' "$work/manifests")
    if [ -n "$flagged" ]; then
        echo "warning: CLOCK: ${flagged%%:*} backup(s) whose stamp is more than $((CLOCK_TOLERANCE_SECONDS / 60)) minutes ahead of, or" \
            "more than $(((CLOCK_TOLERANCE_SECONDS + LONGEST_BACKUP_SECONDS) / 60)) minutes behind, the server's time of their manifest (ordered and aged by the server's time):${flagged#*:}" >&2
    fi

    delete_batches "older than $days days by the server's time"
    awk 'FILENAME == ARGV[1] { gone[$1]; next } !($2 in gone) { print $2 }' "$work/gone" "$work/manifests" >"$dir/keep-stamps.tmp"
    mv "$dir/keep-stamps.tmp" "$dir/keep-stamps"
    echo "retention: $deleted backup(s) older than $days days deleted in $requests request(s) (the newest $KEEP_NEWEST good ones are always kept)"
}

case "$step" in
    dump) dump ;;
    password) password ;;
    upload) upload ;;
    all)
        upload_settings
        dump
        upload
        ;;
    *) fail "BACKUP_STEP must be dump, password, upload or all (got '$step')" ;;
esac
