#!/bin/sh
# Backs up CVAT's data volume into the workspace's restic repository
# (s3:<endpoint>/<bucket>/<key>/data), incrementally: unchanged files are neither
# read nor uploaded again. Runs in the official restic image, as CVAT's user.
#
# DATA_STEP chooses what runs:
#   backup  (after backup.sh dump and password) a snapshot of DATA_DIR, tagged with
#           the backup's stamp; its id and counts go to BACKUP_DIR/data-snapshot for
#           the manifest (backup.sh upload). The repository is created on first use.
#           An empty volume is taken by its absolute path (restic refuses an empty root).
#   prune   (after backup.sh upload, which applied the retention to the manifests)
#           forgets the snapshots whose backup is gone, keeping those named by
#           BACKUP_DIR/keep-stamps, the newest 3 and the last day's, and prunes.
#
# Environment:
#   DATA_DIR          the data volume (mounted read-only for the backup)
#   BACKUP_DIR        shared with backup.sh: stamp, skip, data-repository-exists, data-snapshot, keep-stamps
#   SECRET_DIR        holds data-password (default: BACKUP_DIR)
#   BACKUP_BUCKET BACKUP_PREFIX   the repository is <bucket>/<key>/data for BACKUP_PREFIX <key>/database/
#   RESTIC_HOST       the host name recorded in snapshots (the workspace): the parent of the
#                     next backup is found by it, which is what makes backups incremental
#   RESTIC_CACHE_DIR  restic's cache (an emptyDir)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

KEEP_NEWEST=3
step=${DATA_STEP:-backup}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' INT TERM
dir=${BACKUP_DIR:?BACKUP_DIR is not set}

repository_env() {
    bucket=${BACKUP_BUCKET:?BACKUP_BUCKET is not set}
    prefix=${BACKUP_PREFIX:?BACKUP_PREFIX is not set}
    case "$prefix" in
        */database/) root=${prefix%database/} ;;
        *) fail "BACKUP_PREFIX must end with /database/ (got '$prefix')" ;;
    esac
    endpoint=${AWS_ENDPOINT_URL:?AWS_ENDPOINT_URL is not set}
    export RESTIC_REPOSITORY="s3:${endpoint%/}/$bucket/${root}data"
    export RESTIC_PASSWORD_FILE="${SECRET_DIR:-$dir}/data-password"
    [ -s "$RESTIC_PASSWORD_FILE" ] || fail "no repository password in $RESTIC_PASSWORD_FILE (did backup.sh password run?)"
    # Path-style requests and the configured region, as for every S3 client here.
    set -- -o s3.bucket-lookup=path
    [ -z "${AWS_DEFAULT_REGION:-}" ] || set -- "$@" -o "s3.region=$AWS_DEFAULT_REGION"
    restic_options="$*"
}

run_restic() {
    # shellcheck disable=SC2086
    restic $restic_options "$@"
}

# holds_nothing DIR: whether DIR holds no entry (dot files count) but the restore's own state.
holds_nothing() {
    for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        [ "$entry" = "$1/.labeling-restore" ] || return 1
    done
    return 0
}

backup() {
    if [ -f "$dir/skip" ]; then
        echo "the database held no tables: no data backup either"
        return 0
    fi
    data=${DATA_DIR:?DATA_DIR is not set}
    [ -d "$data" ] || fail "$data is not a directory"
    stamp=$(cat "$dir/stamp" 2>/dev/null) || fail "no $dir/stamp (did backup.sh dump run?)"
    is_stamp "$stamp" || fail "bad stamp '$stamp' in $dir/stamp"
    host=${RESTIC_HOST:?RESTIC_HOST is not set}
    repository_env
    if [ ! -f "$dir/data-repository-exists" ]; then
        echo "creating the data repository $RESTIC_REPOSITORY ..."
        run_restic init >"$work/init" 2>&1 || fail "cannot create the repository: $(cat "$work/init")"
    fi
    echo "backing up $data into $RESTIC_REPOSITORY ..."
    # Snapshots are found again by host and path (the parent of an incremental backup),
    # and by the stamp tag (retention). The restore's own state is never backed up.
    cd "$data"
    # The volume's content sits at the snapshot's root ("."), but restic refuses a snapshot
    # whose root is empty, in the Debian test machines' 0.14 as in the image's 0.18.1 (exit 1,
    # "Fatal: unable to save snapshot: snapshot is empty"). In restic v0.18.1,
    # internal/archiver/archiver.go:769-800 (resolveRelativeTargets) replaces "." by the
    # directory's entries, none for an empty volume (and .labeling-restore alone is
    # excluded), and archiver.go:903-905 fails with `nodeCount == 0`: "snapshot is empty";
    # cmd/restic/cmd_backup.go:686 makes it fatal, cmd/restic/main.go:217-218 exit code 1
    # (v0.14.0: archiver.go:832, `len(tree.Nodes) == 0`; restic's master keeps the check).
    # An empty volume is therefore backed up by its absolute path: the root then holds the
    # directories down to the (empty) volume, the snapshot's path is the same, and both
    # restores (data-restore.sh stage; restore_data in components/backups.py, behind
    # `download --with-data`) take a snapshot "taken by its absolute path" from below that
    # path: an empty volume comes back empty.
    # The manifest is as for any backup (a snapshot id, 0 files, 0 bytes). The next backup
    # of a filled volume has it as parent and reads every file once (nothing is uploaded twice).
    target=.
    if holds_nothing "$data"; then
        target=$(pwd)
        echo "the data volume is empty: snapshot of $target taken by its absolute path"
    fi
    status=0
    run_restic backup --json --quiet --host "$host" --tag labeling --tag "stamp:$stamp" \
        --exclude "$data/.labeling-restore" "$target" >"$work/out" 2>"$work/err" || status=$?
    # 3: some files could not be read. The snapshot is then incomplete: not a backup.
    [ "$status" -eq 0 ] || fail "restic backup failed (exit $status): $(tail -n 5 "$work/err")"
    summary=$(grep '"message_type":"summary"' "$work/out" | tail -n 1)
    field() { echo "$summary" | sed -nE "s/.*\"$1\":\"?([0-9a-f.]+)\"?.*/\1/p"; }
    snapshot=$(field snapshot_id)
    files=$(field total_files_processed)
    bytes=$(field total_bytes_processed)
    added=$(field data_added)
    new=$(field files_new)
    changed=$(field files_changed)
    # restic before 0.15 prints the short id: backup.sh upload finds the full one in the bucket.
    case "$snapshot" in
        '' | *[!0-9a-f]*) fail "restic gave no snapshot id: $(tail -n 3 "$work/out")" ;;
    esac
    printf 'snapshot %s\nfiles %s\nbytes %s\n' "$snapshot" "$files" "$bytes" >"$dir/data-snapshot"
    echo "data snapshot $snapshot: $files files, $bytes bytes ($new new, $changed changed, $added bytes added)"
}

prune() {
    if [ -f "$dir/skip" ]; then
        echo "nothing was backed up: nothing to prune"
        return 0
    fi
    repository_env
    [ -s "$dir/keep-stamps" ] || fail "no $dir/keep-stamps (did backup.sh upload run?): nothing is forgotten"
    stamp=$(cat "$dir/stamp")
    grep -qx "$stamp" "$dir/keep-stamps" || fail "$dir/keep-stamps does not name the backup just made: nothing is forgotten"
    set --
    while read -r s; do
        ! is_stamp "$s" || set -- "$@" --keep-tag "stamp:$s"
    done <"$dir/keep-stamps"
    # Locks left by a killed run (stale: their process is gone or they are old) would stop the prune.
    run_restic unlock >/dev/null 2>&1 || true
    # A snapshot stays while a manifest names its stamp; also the newest ones, and those
    # of the last day (a backup in progress has no manifest yet).
    run_restic forget --tag labeling --group-by '' --keep-last "$KEEP_NEWEST" --keep-within 1d "$@" --prune \
        >"$work/out" 2>&1 || fail "restic forget failed: $(tail -n 5 "$work/out")"
    removed=$(grep -c '^remove ' "$work/out" || true)
    grep -i 'remove\|keep [0-9]' "$work/out" | head -n 5 || true
    echo "data retention done ($removed snapshot group(s) forgotten)"
}

case "$step" in
    backup) backup ;;
    prune) prune ;;
    *) fail "DATA_STEP must be backup or prune (got '$step')" ;;
esac
