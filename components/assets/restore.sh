#!/bin/sh
# Restores a workspace backup (docs/backups.md): the PostgreSQL database, and with
# data-restore.sh the data volume's snapshot.
#
# RESTORE_STEP chooses what runs:
#   check    before anything is downloaded: says whether this request is already
#            restored (then the later steps do nothing) and refuses (exit code 3)
#            a database that holds tables unless RESTORE_FORCE is "true"
#            (needs psql, pg_isready);
#   fetch    find the backup and download its dump into RESTORE_DIR, and for a whole
#            backup (a manifest) the data repository's password into SECRET_DIR
#            (needs the AWS CLI); only what is not restored yet;
#   restore  check again (the database may have changed meanwhile), then load the
#            dump in one transaction (needs pg_restore, psql);
#   all      the three in order (the default), with data-restore.sh's stage before
#            the restore and its swap after it when DATA_DIR is set.
# In the restore Job, check, fetch (data-restore.sh stage) and restore run in init
# containers and data-restore.sh swap (or restore) in the main container; they share
# RESTORE_DIR.
#
# All or nothing: the restore and a marker naming the request are one transaction,
# committed only once pg_restore read the whole archive and its SHA-256 matched; on
# any failure psql is killed before it sees the end of its input, so the server
# rolls everything back and the database is left exactly as it was. While it runs,
# the database accepts no new connections and the others are ended (CVAT may be
# running); connections are allowed again afterwards, also after a failure, and a
# run that finds the database left closed by a killed restore opens it again.
# Locks are waited for at most RESTORE_LOCK_TIMEOUT.
#
# RESTORE_FROM:
#   latest                       the newest good backup (manifest) under the workspace's prefix, by
#                                the server's time of its manifest (LastModified), not its stamp;
#                                without any manifest, the newest dump (older layouts)
#   <key>/backups/<stamp>.json   a whole backup (database and data)
#   <key>/database/<stamp>.dump  a database dump alone (older backups)
#                                (<stamp>: YYYYMMDDTHHMMSSZ, and since backups made in the same second
#                                are told apart, YYYYMMDDTHHMMSSZ-<8 hex digits>; see docs/backups.md)
#   s3://<bucket>/<key>          either, in another bucket
#
# Environment:
#   RESTORE_FROM     see above
#   RESTORE_REQUEST  id of this restore request (default: RESTORE_FROM); a new id restores again
#   RESTORE_FORCE    "true" to replace existing tables (default "false")
#   RESTORE_DIR      what the steps hand on to each other (default: a temporary directory)
#   RESTORE_LOCK_TIMEOUT  longest wait for a lock (default 60s; PostgreSQL units)
#   DATA_DIR         the data volume, when the Job restores it too (see data-restore.sh)
#   SECRET_DIR       where fetch writes data-password (default: RESTORE_DIR)
#   BACKUP_BUCKET BACKUP_PREFIX   where "latest" and plain keys are looked up
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the database (libpq variables)
#   PGMAINTENANCE_DATABASE  database to connect to while the restored one is closed (default postgres)
#   WAIT_SECONDS     how long to wait for the database to accept connections (default 300)
#   READ_ATTEMPTS    how many times a read that fails in transfer is tried (default 3)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

REFUSED=3
APPLICATION=labeling-restore
step=${RESTORE_STEP:-all}
source=${RESTORE_FROM:?RESTORE_FROM is not set}
request=${RESTORE_REQUEST:-$source}
case "$source$request" in
    *"'"* | *'"'* | *'\'* | *' '* | *'$'* | *'`'*) fail "RESTORE_FROM and RESTORE_REQUEST must not contain quotes, backslashes or spaces" ;;
esac
work=$(mktemp -d)
psql_pid=""
closed=""
cleanup() {
    status=$?
    trap - EXIT
    if [ -n "$psql_pid" ]; then
        kill -KILL "$psql_pid" 2>/dev/null || true
        wait "$psql_pid" 2>/dev/null || true
    fi
    [ -z "$closed" ] || reopen_database || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' INT TERM
# A psql that stopped early must not kill this script (or pg_restore) with SIGPIPE:
# the write fails instead, and the failure is handled.
trap '' PIPE
dir=${RESTORE_DIR:-$work}
archive="$dir/restore.dump"
# Written by the check when the database already holds this request's restore.
restored="$dir/already-restored"
marker="labeling-restore: $request"
state=${DATA_DIR:+$DATA_DIR/.labeling-restore}

sql() {
    psql --no-psqlrc --no-password --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 "$@"
}

# maintenance ARGS: psql on the maintenance database (SQL on stdin).
maintenance() {
    PGDATABASE=${PGMAINTENANCE_DATABASE:-postgres} sql "$@"
}

# data_pending: whether the data volume still needs this request's snapshot.
data_pending() {
    [ -n "$state" ] || return 1
    [ "$(cat "$state/done" 2>/dev/null)" != "$request" ] && [ "$(cat "$state/staged" 2>/dev/null)" != "$request" ]
}

# parse_source S3URL-OR-KEY: sets bucket and key.
parse_source() {
    case "$1" in
        s3://*)
            rest=${1#s3://}
            bucket=${rest%%/*}
            key=${rest#*/}
            [ -n "$bucket" ] && [ -n "$key" ] && [ "$key" != "$rest" ] || fail "'$1' is not s3://<bucket>/<key>"
            ;;
        *)
            bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
            key=$1
            ;;
    esac
}

# A backup is either read whole or not used: what the server answers completely (no such
# object; a manifest that does not parse; a dump whose size or SHA-256 is not its manifest's;
# a data snapshot missing from the repository) makes a backup "not good", and `latest` takes
# the one before. A read that fails (a reset, a timeout, a 5xx, a body cut short even with a
# Content-Length that agrees with it) is tried again (attempt) and, if it keeps failing,
# fails the restore: it is never a reason to restore an older backup.

# check_backup BUCKET KEY FILE SIZE: reads the manifest KEY (SIZE bytes by the listing, empty
# when unknown) into FILE and checks the backup it names without downloading its dump: the
# dump's size and SHA-256 metadata, the data snapshot's file. Sets dump_key, dump_size,
# dump_sha256, snapshot (empty without data) and repository. Returns 0 (a good backup), 2 (not
# a good backup: says why) or 1 (a read failed: $work/err).
check_backup() {
    answer=0
    get_whole "$1" "$2" "$3" "$4" || answer=$?
    case "$answer" in
        0) ;;
        2)
            echo "s3://$1/$2 does not exist" >&2
            return 2
            ;;
        *) return 1 ;;
    esac
    dump_key=$(manifest_field "$3" key)
    dump_size=$(manifest_field "$3" size)
    dump_sha256=$(manifest_field "$3" sha256)
    snapshot=$(manifest_field "$3" snapshot)
    repository=$(manifest_field "$3" repository)
    if [ "$(manifest_field "$3" format)" != 1 ] || [ -z "$dump_key" ] || [ -z "$dump_size" ] || ! is_hex64 "$dump_sha256"; then
        echo "s3://$1/$2 is not a backup manifest this restore understands" >&2
        return 2
    fi
    if [ -n "$snapshot" ]; then
        # The snapshot is listed by `restic snapshots` when its file is in the repository.
        if ! is_hex64 "$snapshot" || [ -z "$repository" ]; then
            echo "s3://$1/$2: its data snapshot '$snapshot' is not a snapshot id of a repository" >&2
            return 2
        fi
        answer=0
        head_fields "$1" "$repository/snapshots/$snapshot" '[ContentLength]' || answer=$?
        case "$answer" in
            0) ;;
            2)
                echo "s3://$1/$2: its data snapshot $snapshot is not in s3://$1/$repository" >&2
                return 2
                ;;
            *) return 1 ;;
        esac
    fi
    answer=0
    head_fields "$1" "$dump_key" '[ContentLength, Metadata.sha256]' || answer=$?
    case "$answer" in
        0) ;;
        2)
            echo "s3://$1/$2: its dump s3://$1/$dump_key does not exist" >&2
            return 2
            ;;
        *) return 1 ;;
    esac
    read -r stored_size stored_sha256 <"$work/head"
    # A dump that does not match its manifest (a fault in the past, a later overwrite) makes
    # the backup not good, once a second HEAD request says the same.
    if [ "$stored_size" != "$dump_size" ] || [ "$stored_sha256" != "$dump_sha256" ]; then
        answer=0
        head_again "$1" "$dump_key" '[ContentLength, Metadata.sha256]' || answer=$?
        [ "$answer" -eq 2 ] || return 1
        echo "s3://$1/$dump_key does not match its manifest s3://$1/$2 (size $stored_size, sha256 '$stored_sha256')" >&2
        return 2
    fi
}

# download BUCKET KEY SIZE: the dump into $archive; sets got_size and got_sha256 (its
# metadata). SIZE is what the object holds (its HEAD, or the listing): fewer bytes is a read
# that failed. Returns 0, 2 (no such object) or 1 (the read failed: $work/err).
download() {
    echo "downloading s3://$1/$2 ..."
    rm -f "$archive"
    aws s3api get-object --bucket "$1" --key "$2" "$archive" --query '[ContentLength, Metadata.sha256]' --output text \
        >"$work/got" 2>"$work/err" || {
        if is_missing "$work/err"; then
            echo "s3://$1/$2 does not exist" >&2
            return 2
        fi
        # A full disk is no transfer error: trying again would not help.
        if grep -q 'No space left\|Errno 28\|File too large\|Errno 27' "$work/err"; then
            fail "cannot download s3://$1/$2: $(cat "$work/err")"
        fi
        return 1
    }
    read -r got_size got_sha256 <"$work/got"
    [ "$got_sha256" != None ] || got_sha256=""
    bytes=$(wc -c <"$archive" | tr -d ' ')
    if [ "$bytes" != "$got_size" ] || [ "$bytes" != "$3" ]; then
        echo "the download of s3://$1/$2 is incomplete: $bytes bytes of $3" >"$work/err"
        rm -f "$archive"
        return 1
    fi
}

# read_failed WHAT: fails the restore after a read that kept failing.
read_failed() {
    fail "cannot read $1 (tried $READ_ATTEMPTS times): $(tail -n 3 "$work/err"); the restore stops here: a read that fails is no reason to take an older backup"
}

# use_manifest BUCKET KEY: fetches what the good manifest (check_backup) names; returns 2 when
# the dump is gone meanwhile.
use_manifest() {
    if [ -n "$need_dump" ]; then
        fetched=0
        attempt "s3://$1/$dump_key" download "$1" "$dump_key" "$dump_size" || fetched=$?
        case "$fetched" in
            0) ;;
            2) return 2 ;;
            *) read_failed "s3://$1/$dump_key" ;;
        esac
        # The same object as its HEAD said (checked by check_backup): its metadata too.
        [ "$got_sha256" = "$dump_sha256" ] ||
            fail "s3://$1/$dump_key changed while it was read (sha256 '$got_sha256', its manifest says $dump_sha256)"
        echo "$dump_sha256" >"$dir/expected-sha256"
        echo "$dump_size" >"$dir/expected-size"
    fi
    resolved="s3://$1/$2"
    fetch_data "$1"
}

# clock_note STAMP STORED: warns when a backup's stamp and the server's time disagree.
clock_note() {
    problem=$(clock_problem "$1" "$2")
    [ -z "$problem" ] || echo "warning: CLOCK: backup $1: stamp $problem; the clock of the pod that made it was wrong (backups are ordered by the server's time)" >&2
}

# fetch_data BUCKET: what data-restore.sh needs: the snapshot and the repository's password.
fetch_data() {
    [ -n "$need_data" ] || return 0
    if [ -z "$snapshot" ]; then
        echo "the backup has no data snapshot: the data volume is left as it is"
        echo "none" >"$dir/data-source"
        return 0
    fi
    # Kept next to the repository: <key>/data-password for <key>/data.
    password_key="$(dirname "$repository")/data-password"
    (umask 077 && aws s3api get-object --bucket "$1" --key "$password_key" "${SECRET_DIR:-$dir}/data-password" >/dev/null) ||
        fail "cannot read the data repository's password s3://$1/$password_key"
    printf 'bucket %s\nrepository %s\nsnapshot %s\n' "$1" "$repository" "$snapshot" >"$dir/data-source"
    echo "data snapshot $snapshot of s3://$1/$repository will be restored"
}

fetch() {
    need_dump=yes
    need_data=""
    from=$source
    if [ -f "$restored" ]; then
        need_dump=""
        # Resume what the database already holds (even if "latest" would be another backup now).
        from=$(cat "$restored")
    fi
    ! data_pending || need_data=yes
    if [ -z "$need_dump" ] && [ -z "$need_data" ]; then
        echo "database already holds this restore ($from): nothing to download"
        return 0
    fi
    s3_cli_setup "$work"
    rm -f "$archive" "$dir/source" "$dir/expected-sha256" "$dir/expected-size" "$dir/data-source"
    snapshot=""
    repository=""
    resolved=""
    if [ "$from" = latest ]; then
        fetch_latest
    else
        parse_source "$from"
        case "$key" in
            *.json)
                # Its size and the server's time of it, from a request of their own.
                got=0
                attempt "s3://$bucket/$key" head_fields "$bucket" "$key" '[ContentLength, LastModified]' || got=$?
                case "$got" in
                    0) ;;
                    2) fail "s3://$bucket/$key does not exist" ;;
                    *) read_failed "s3://$bucket/$key" ;;
                esac
                size=$(cut -f1 "$work/head")
                stored=$(cut -f2 "$work/head" | awk "$AWK_TIMES"'{ print utc_stamp($0) }')
                got=0
                attempt "s3://$bucket/$key" check_backup "$bucket" "$key" "$work/manifest.json" "$size" || got=$?
                [ "$got" -ne 1 ] || read_failed "s3://$bucket/$key"
                [ "$got" -eq 0 ] || fail "s3://$bucket/$key is not a good backup"
                use_manifest "$bucket" "$key" || fail "s3://$bucket/$key is not a good backup"
                name=${key##*/}
                ! is_stamp "${name%.json}" || [ "$stored" = - ] || clock_note "${name%.json}" "$stored"
                ;;
            *)
                [ -z "$need_data" ] || echo "$key is a database dump alone: the data volume is left as it is"
                need_data=""
                [ -z "$need_dump" ] || fetch_dump "$bucket" "$key"
                resolved="s3://$bucket/$key"
                ;;
        esac
    fi
    echo "$resolved" >"$dir/source"
    # A dump alone (or a backup without data): the data steps leave the volume as it is.
    ! data_pending || [ -f "$dir/data-source" ] || echo "none" >"$dir/data-source"
}

# fetch_dump BUCKET KEY [SIZE]: a dump alone; its SHA-256 metadata, when it has one, is checked
# at restore. SIZE: what the listing says it holds (else a HEAD request asks).
fetch_dump() {
    size=${3:-}
    if [ -z "$size" ]; then
        got=0
        attempt "s3://$1/$2" head_fields "$1" "$2" '[ContentLength]' || got=$?
        case "$got" in
            0) size=$(cat "$work/head") ;;
            2) fail "s3://$1/$2 does not exist; cannot restore it" ;;
            *) read_failed "s3://$1/$2" ;;
        esac
    fi
    got=0
    attempt "s3://$1/$2" download "$1" "$2" "$size" || got=$?
    case "$got" in
        0) ;;
        2) fail "cannot restore s3://$1/$2" ;;
        *) read_failed "s3://$1/$2" ;;
    esac
    if [ -n "$got_sha256" ]; then
        echo "$got_sha256" >"$dir/expected-sha256"
    else
        echo "s3://$1/$2 has no sha256 metadata (an older backup): it is accepted if pg_restore can read it"
    fi
    echo "$got_size" >"$dir/expected-size"
}

# fetch_latest: the newest good backup by the server's time of its manifest (LastModified:
# the manifest is written last, in one request), the stamp breaking ties: a pod whose clock
# was wrong does not make its backup the newest, nor an older one. Without any manifest, the
# newest dump (older layouts) by the same rule.
fetch_latest() {
    bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
    prefix=${BACKUP_PREFIX:?BACKUP_PREFIX is not set}
    case "$prefix" in
        */database/) root=${prefix%database/} ;;
        *) fail "BACKUP_PREFIX must end with /database/ (got '$prefix')" ;;
    esac
    list_keys "$bucket" "${root}backups/" "$work/manifests.keys"
    while read -r k size stored; do
        n=${k#"${root}backups/"}
        [ "$n" != "${n%.json}" ] && is_stamp "${n%.json}" && echo "$stored ${n%.json} $k $size"
    done <"$work/manifests.keys" | LC_ALL=C sort -r >"$work/manifests"
    if [ -s "$work/manifests" ]; then
        while read -r stored s k size; do
            got=0
            attempt "s3://$bucket/$k" check_backup "$bucket" "$k" "$work/manifest.json" "$size" || got=$?
            [ "$got" -ne 1 ] || read_failed "s3://$bucket/$k (the newest backup not known to be bad)"
            [ "$got" -ne 0 ] || use_manifest "$bucket" "$k" || got=$?
            if [ "$got" -eq 0 ]; then
                echo "latest good backup: s3://$bucket/$k (stored $(echo "$stored" | sed -E 's/^(....)(..)(..)T(..)(..)(..)Z$/\1-\2-\3 \4:\5:\6/') UTC by the server's clock)"
                clock_note "$s" "$stored"
                return 0
            fi
            echo "skipping s3://$bucket/$k: not a good backup" >&2
        done <"$work/manifests"
        fail "no good backup under s3://$bucket/${root}backups/"
    fi
    backup_list "$bucket" "$prefix" "$work/backups"
    newest=$(awk '$2 > 0 { n = $1 " " $2 } END { print n }' "$work/backups")
    [ -n "$newest" ] || fail "no backup found under s3://$bucket/$prefix"
    name=${newest% *}
    echo "no manifest under s3://$bucket/${root}backups/: using the newest dump, $name"
    need_data=""
    resolved="s3://$bucket/$prefix$name"
    [ -z "$need_dump" ] || fetch_dump "$bucket" "$prefix$name" "${newest#* }"
}

wait_for_database() {
    [ -n "${PGDATABASE:-}" ] || fail "PGDATABASE is not set"
    deadline=$(($(date +%s) + ${WAIT_SECONDS:-300}))
    until pg_isready --quiet; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "database ${PGHOST:-local socket} did not accept connections in time"
        sleep 2
    done
}

# reopen_database: allows connections to PGDATABASE again after a restore closed it: the
# restore that stopped (this one, or one that was killed) is ended first if its session
# still runs on the server, then the database is opened. Through the maintenance
# database, since a closed one refuses every connection.
reopen_database() {
    reopened=$(maintenance -v db="$PGDATABASE" -v app="$APPLICATION%" <<'EOF'
SELECT coalesce((SELECT NOT datallowconn FROM pg_database WHERE datname = :'db'), false) AS closed \gset
\if :closed
SELECT count(pg_terminate_backend(pid, 30000)) AS ended FROM pg_stat_activity
WHERE datname = :'db' AND application_name LIKE :'app' AND pid <> pg_backend_pid() \gset
ALTER DATABASE :"db" ALLOW_CONNECTIONS true;
\echo reopened
\endif
EOF
    ) || {
        echo "warning: cannot check whether database $PGDATABASE accepts connections" >&2
        return 1
    }
    case "$reopened" in
        *reopened*) echo "database $PGDATABASE accepts connections again (a restore had closed it)" ;;
    esac
}

# check: returns 0 and sets $already (the marker's source) when the database already
# holds this request's restore; exits 3 when it holds tables and RESTORE_FORCE is
# not "true"; otherwise returns 0 with $tables set (and $already empty).
check() {
    wait_for_database
    reopen_database || true
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
    expected_size=$(cat "$dir/expected-size" 2>/dev/null || true)
    [ -z "$expected_size" ] || [ "$(wc -c <"$archive" | tr -d ' ')" = "$expected_size" ] ||
        fail "$archive does not have the size of the backup; the database was left as it was"
    pg_restore --list "$archive" >/dev/null || fail "$archive is not a readable pg_dump archive; the database was left as it was"
    expected_sha256=$(cat "$dir/expected-sha256" 2>/dev/null || true)
    resolved=$(cat "$dir/source" 2>/dev/null || echo "$source")
    clean=""
    if [ "$tables" -gt 0 ]; then
        echo "database $PGDATABASE holds $tables tables: replacing them (RESTORE_FORCE=true)"
        clean="--clean --if-exists"
    fi
    # Locks held by others are waited for this long at most (the sessions are ended first).
    PGOPTIONS="${PGOPTIONS:-} -c lock_timeout=${RESTORE_LOCK_TIMEOUT:-60s}"
    export PGOPTIONS

    # psql reads the restore from a FIFO whose write end this script holds open (fd 3):
    # psql never sees the end of its input before the script decides. Only when
    # pg_restore read the whole archive and the SHA-256 matched does the script write
    # the marker and COMMIT; otherwise psql is killed inside the transaction (even in
    # the middle of a COPY), and the server rolls it back.
    mkfifo "$work/sql"
    session="$APPLICATION $$"
    PGAPPNAME=$session psql --no-psqlrc --no-password --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 \
        -v database="$PGDATABASE" -v marker_text="$marker $resolved" <"$work/sql" >"$work/psql.out" 2>"$work/psql.err" &
    psql_pid=$!
    exec 3>"$work/sql"
    # Once this session is connected, the database is closed to new connections and the
    # others are ended (a database cannot close itself: through the maintenance database).
    waited=0
    until [ "$(echo "SELECT count(*) FROM pg_stat_activity WHERE datname = :'db' AND application_name = :'app';" |
        maintenance -v db="$PGDATABASE" -v app="$session")" = 1 ]; do
        kill -0 "$psql_pid" 2>/dev/null || fail "cannot connect to database $PGDATABASE: $(tail -n 3 "$work/psql.err")"
        [ "$waited" -lt 1200 ] || fail "the restore session did not connect to database $PGDATABASE"
        sleep 0.05
        waited=$((waited + 1))
    done
    closed=yes
    ended=$(maintenance -v db="$PGDATABASE" -v app="$session" <<'EOF'
ALTER DATABASE :"db" ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = :'db' AND application_name IS DISTINCT FROM :'app' AND pid <> pg_backend_pid();
EOF
    ) || fail "cannot close database $PGDATABASE to other connections"
    echo "database $PGDATABASE closed to new connections; $ended other session(s) ended"
    {
        echo 'BEGIN;'
        if [ -z "$clean" ]; then
            # Nothing may have appeared since the check.
            echo "DO \$\$ BEGIN IF EXISTS (SELECT 1 FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) THEN RAISE EXCEPTION 'tables appeared in the database since the check: refusing'; END IF; END \$\$;"
        fi
    } >&3 || true
    (sha256_of "$archive" >"$work/sha256") &
    hashing=$!
    restored_ok=yes
    # pg_restore's script starts by turning lock_timeout off: that line is left out, so that
    # RESTORE_LOCK_TIMEOUT holds for the whole restore (the rest of the stream is passed as is).
    # shellcheck disable=SC2086
    {
        pg_restore --no-owner --no-privileges --role="$PGUSER" $clean --file=- "$archive" 2>"$work/pg_restore.err"
        echo $? >"$work/pg_restore.status"
    } | {
        lines=0
        while [ "$lines" -lt 50 ] && IFS= read -r line; do
            [ "$line" = "SET lock_timeout = 0;" ] || printf '%s\n' "$line"
            lines=$((lines + 1))
        done
        exec cat
    } >&3 || restored_ok=""
    [ "$(cat "$work/pg_restore.status" 2>/dev/null)" = 0 ] || restored_ok=""
    wait "$hashing" || restored_ok=""
    why=""
    if ! kill -0 "$psql_pid" 2>/dev/null; then
        why="psql stopped: $(tail -n 3 "$work/psql.err")"
    elif [ -z "$restored_ok" ]; then
        why="pg_restore could not read the whole archive: $(tail -n 3 "$work/pg_restore.err")"
    elif [ -n "$expected_sha256" ] && [ "$(cat "$work/sha256")" != "$expected_sha256" ]; then
        why="the archive's SHA-256 is not the backup's ($expected_sha256): it is damaged"
    fi
    if [ -n "$why" ]; then
        # Killed before it reads an end of input: nothing is committed.
        kill -KILL "$psql_pid" 2>/dev/null || true
        wait "$psql_pid" 2>/dev/null || true
        psql_pid=""
        exec 3>&-
        fail "$why; the restore failed and the database was left as it was"
    fi
    {
        echo 'COMMENT ON DATABASE :"database" IS :'"'"'marker_text'"'"';'
        echo 'COMMIT;'
    } >&3 || true
    exec 3>&-
    status=0
    wait "$psql_pid" || status=$?
    psql_pid=""
    [ "$status" -eq 0 ] || fail "the restore failed and the database was left as it was: $(tail -n 3 "$work/psql.err")"
    reopen_database || fail "the restore is in, but database $PGDATABASE could not be opened to connections again"
    closed=""
    [ "$(sql -c "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()")" = "$marker $resolved" ] ||
        fail "the restore did not commit"
    # Statistics: autovacuum analyzes the new tables soon (they changed completely).
    echo "restored database $PGDATABASE from $resolved"
}

data_step() {
    [ -n "$state" ] || return 0
    RESTORE_DIR=$dir DATA_STEP=$1 sh "$(dirname "$0")/data-restore.sh"
}

case "$step" in
    check) check_step ;;
    fetch) fetch ;;
    restore) restore ;;
    all)
        check_step
        fetch
        data_step stage
        restore
        data_step swap
        ;;
    *) fail "RESTORE_STEP must be check, fetch, restore or all (got '$step')" ;;
esac
