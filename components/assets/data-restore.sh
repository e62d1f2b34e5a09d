#!/bin/sh
# Restores CVAT's data volume from a restic snapshot, all or nothing: the snapshot is
# restored into a staging directory on the volume first, and only once the database
# restore succeeded is it swapped in, entry by entry, with renames on one file
# system. The swap resumes where it stopped if the pod is killed, and the volume's
# former content is deleted only once the new one is complete. Runs in the official
# restic image, as CVAT's user.
#
# DATA_STEP chooses what runs:
#   stage  (after restore.sh fetch) restore the snapshot named by RESTORE_DIR/data-source
#          into DATA_DIR/.labeling-restore/staging;
#   swap   (after restore.sh restore) move the volume's entries aside, move the staged
#          ones in, mark the request done, delete the former entries.
# Nothing happens when RESTORE_DIR/data-source says "none" (a dump alone, or a backup
# without data) or when the volume already holds this request's restore.
#
# Environment:
#   RESTORE_REQUEST   id of this restore request (default: RESTORE_FROM)
#   RESTORE_DIR       shared with restore.sh: data-source
#   DATA_DIR          the data volume (read-write)
#   SECRET_DIR        holds data-password (default: RESTORE_DIR)
#   RESTIC_CACHE_DIR  restic's cache (an emptyDir)
#   AWS_ENDPOINT_URL AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
set -eu
. "$(dirname "$0")/s3-cli.sh"

step=${DATA_STEP:-stage}
request=${RESTORE_REQUEST:-${RESTORE_FROM:?RESTORE_FROM is not set}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' INT TERM
dir=${RESTORE_DIR:?RESTORE_DIR is not set}
data=${DATA_DIR:?DATA_DIR is not set}
[ -d "$data" ] || fail "$data is not a directory"
state="$data/.labeling-restore"

# write_state NAME VALUE: one state file, replaced atomically.
write_state() {
    printf '%s\n' "$2" >"$state/$1.tmp"
    mv -f "$state/$1.tmp" "$state/$1"
}

read_state() {
    cat "$state/$1" 2>/dev/null || true
}

# entries DIR: every entry of DIR (dot files too) but the restore's own state.
entries() {
    for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        [ "$entry" != "$state" ] || continue
        printf '%s\n' "$entry"
    done
}

# finish_swap: completes a swap that started (this request's or an earlier one's).
finish_swap() {
    phase=$(read_state phase)
    swapping=${phase#* }
    case "$phase" in
        "evacuate "*)
            # The volume's entries go aside (a rename each); until the phase changes,
            # everything at the top of the volume is former content.
            mkdir -p "$state/former"
            entries "$data" | while read -r entry; do
                mv "$entry" "$state/former/" || exit 1
            done || fail "cannot move the volume's entries aside"
            write_state phase "install $swapping"
            finish_swap
            ;;
        "install "*)
            entries "$state/staging" | while read -r entry; do
                mv "$entry" "$data/" || exit 1
            done || fail "cannot move the restored entries into place"
            write_state done "$swapping"
            write_state phase "cleanup $swapping"
            finish_swap
            ;;
        "cleanup "*)
            rm -rf "$state/former" "$state/staging"
            rm -f "$state/staged" "$state/phase"
            echo "data volume restored ($swapping)"
            ;;
        "") ;;
        *) fail "unknown restore state '$phase' in $state/phase" ;;
    esac
}

source_field() {
    sed -n "s/^$1 //p" "$dir/data-source"
}

stage() {
    mkdir -p "$state"
    finish_swap
    if [ "$(read_state done)" = "$request" ]; then
        echo "the data volume already holds this restore: nothing to do"
        return 0
    fi
    if [ "$(read_state staged)" = "$request" ]; then
        echo "this restore is already staged"
        return 0
    fi
    [ -f "$dir/data-source" ] || fail "no $dir/data-source (did restore.sh fetch run?)"
    if [ "$(cat "$dir/data-source")" = none ]; then
        echo "no data snapshot to restore: the data volume is left as it is"
        return 0
    fi
    bucket=$(source_field bucket)
    repository=$(source_field repository)
    snapshot=$(source_field snapshot)
    is_hex64 "$snapshot" || fail "bad snapshot id '$snapshot' in $dir/data-source"
    endpoint=${AWS_ENDPOINT_URL:?AWS_ENDPOINT_URL is not set}
    export RESTIC_REPOSITORY="s3:${endpoint%/}/$bucket/$repository"
    export RESTIC_PASSWORD_FILE="${SECRET_DIR:-$dir}/data-password"
    set -- -o s3.bucket-lookup=path
    [ -z "${AWS_DEFAULT_REGION:-}" ] || set -- "$@" -o "s3.region=$AWS_DEFAULT_REGION"

    rm -f "$state/staged"
    rm -rf "$state/staging" "$state/target"
    # Restored below target/, then renamed to staging/.
    restic "$@" snapshots --json "$snapshot" >"$work/snapshot" 2>"$work/err" ||
        fail "snapshot $snapshot is not in $RESTIC_REPOSITORY: $(tail -n 3 "$work/err")"
    path=$(sed -nE 's/.*"paths":\["([^"]*)"\].*/\1/p' "$work/snapshot")
    case "$path" in /*) ;; *) fail "snapshot $snapshot has no single path" ;; esac
    echo "restoring snapshot $snapshot of $path into $state/staging ..."
    restic "$@" restore "$snapshot" --target "$state/target" >"$work/out" 2>&1 ||
        fail "restic restore failed; the data volume was left as it was: $(tail -n 5 "$work/out")"
    # data-backup.sh backs up "." (the volume's content sits at the snapshot's root); a
    # snapshot taken by its absolute path has that path below the target.
    if [ -d "$state/target$path" ]; then
        mv "$state/target$path" "$state/staging"
        rm -rf "$state/target"
    else
        mv "$state/target" "$state/staging"
    fi
    write_state staged "$request"
    echo "staged: $(find "$state/staging" -type f | wc -l | tr -d ' ') files"
}

swap() {
    mkdir -p "$state"
    if [ "$(read_state done)" = "$request" ] && [ -z "$(read_state phase)" ]; then
        echo "the data volume already holds this restore: nothing to do"
        return 0
    fi
    phase=$(read_state phase)
    if [ -z "$phase" ]; then
        if [ "$(read_state staged)" != "$request" ]; then
            [ "$(cat "$dir/data-source" 2>/dev/null)" = none ] || fail "nothing staged for this restore (did data-restore.sh stage run?)"
            echo "no data snapshot to restore: the data volume is left as it is"
            # Done all the same: a retried request must not download the backup again.
            write_state done "$request"
            return 0
        fi
        write_state phase "evacuate $request"
    fi
    finish_swap
}

case "$step" in
    stage) stage ;;
    swap) swap ;;
    *) fail "DATA_STEP must be stage or swap (got '$step')" ;;
esac
