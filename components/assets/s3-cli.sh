# Sourced by the pod scripts: sets the AWS CLI up for S3-compatible servers
# (Scaleway, MinIO) and defines the helpers they share. POSIX sh (dash in the
# postgres image, bash in the AWS CLI image, busybox in the restic image).

fail() {
    echo "error: $*" >&2
    exit 1
}

# Objects at least this large are uploaded in parts of this size (the AWS CLI's
# multipart_threshold and multipart_chunksize, set below): 64 MiB parts, because
# Scaleway accepts at most 1000 parts per upload (dumps up to ~64 GB). The ETag a
# server gives an object follows from them (see expected_etag).
PART_BYTES=67108864

# s3_cli_setup DIR: writes the CLI's config into DIR (a writable scratch directory).
# Path-style addressing, because bucket names as host names do not resolve in a
# cluster.
s3_cli_setup() {
    export AWS_CONFIG_FILE="$1/aws-config"
    printf '[default]\ns3 =\n    addressing_style = path\n    multipart_threshold = 64MB\n    multipart_chunksize = 64MB\n' \
        >"$AWS_CONFIG_FILE"
    # boto3 >= 1.36 and CLI v2 send checksum headers that several S3-compatible servers reject.
    export AWS_REQUEST_CHECKSUM_CALCULATION="${AWS_REQUEST_CHECKSUM_CALCULATION:-when_required}"
    export AWS_RESPONSE_CHECKSUM_VALIDATION="${AWS_RESPONSE_CHECKSUM_VALIDATION:-when_required}"
    export AWS_PAGER=""
    [ -n "${AWS_ENDPOINT_URL:-}" ] || fail "AWS_ENDPOINT_URL is not set"
    [ -n "${AWS_DEFAULT_REGION:-}" ] || fail "AWS_DEFAULT_REGION is not set"
}

# is_stamp TEXT: whether TEXT is a backup stamp: YYYYMMDDTHHMMSSZ (UTC, the pod's clock when the
# backup started), followed since the stamps were made unique by "-" and 8 lowercase hex digits
# drawn at random by each run (so that two backups started in the same second never share a
# name; it sorts after the bare stamp of that second). docs/backups.md:
# ^[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{8})?$
is_stamp() {
    case "$1" in
        [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) return 0 ;;
        [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) return 0 ;;
    esac
    return 1
}

# The same, as an extended regular expression (awk), without intervals (older mawk has none).
STAMP_RE='^[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z(-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])?$'

# new_stamp: the stamp of a backup starting now (the pod's clock) with its random suffix.
new_stamp() {
    suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    echo "$(date -u +%Y%m%dT%H%M%SZ)-$suffix"
}

# epoch_of STAMP: the seconds since 1970 of a stamp (its time; the suffix is ignored). Pure
# arithmetic (days from the civil date), the same in every image's shell.
epoch_of() {
    rest=$1
    y=${rest%"${rest#????}"} rest=${rest#????}
    m=${rest%"${rest#??}"} rest=${rest#??}
    d=${rest%"${rest#??}"} rest=${rest#???}
    hh=${rest%"${rest#??}"} rest=${rest#??}
    mm=${rest%"${rest#??}"} rest=${rest#??}
    ss=${rest%"${rest#??}"}
    # "1$x - 100": a leading zero is not read as octal.
    y=$((1$y - 10000)) m=$((1$m - 100)) d=$((1$d - 100))
    [ "$m" -gt 2 ] || y=$((y - 1))
    era=$((y / 400))
    yoe=$((y - era * 400))
    doy=$(((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1))
    doe=$((yoe * 365 + yoe / 4 - yoe / 100 + doy))
    echo $(((era * 146097 + doe - 719468) * 86400 + (1$hh - 100) * 3600 + (1$mm - 100) * 60 + 1$ss - 100))
}

# stamp_at EPOCH: the stamp (without suffix) of that moment.
stamp_at() {
    z=$(($1 / 86400 + 719468))
    secs=$(($1 % 86400))
    era=$((z / 146097))
    doe=$((z - era * 146097))
    yoe=$(((doe - doe / 1460 + doe / 36524 - doe / 146096) / 365))
    doy=$((doe - (365 * yoe + yoe / 4 - yoe / 100)))
    mp=$(((5 * doy + 2) / 153))
    d=$((doy - (153 * mp + 2) / 5 + 1))
    m=$((mp < 10 ? mp + 3 : mp - 9))
    y=$((yoe + era * 400 + (m <= 2)))
    printf '%04d%02d%02dT%02d%02d%02dZ\n' "$y" "$m" "$d" $((secs / 3600)) $((secs % 3600 / 60)) $((secs % 60))
}

# span SECONDS: a duration for people ("365d 0h", "2h 5m", "12m").
span() {
    if [ "$1" -ge 86400 ]; then
        echo "$(($1 / 86400))d $(($1 % 86400 / 3600))h"
    elif [ "$1" -ge 3600 ]; then
        echo "$(($1 / 3600))h $(($1 % 3600 / 60))m"
    else
        echo "$(($1 / 60))m"
    fi
}

# A stamp is the pod's time when a backup started, the server's time of its manifest
# (LastModified) when it ended. So a stamp may trail the server's time by as long as a backup
# can run (the scheduled Job's deadline, 6 h: SCHEDULED_DEADLINE_SECONDS in
# components/database.py) plus the tolerance, and lead it by the tolerance only. Further apart,
# the clock of the pod that made the backup was wrong: the backup is flagged. Backups are
# ordered and aged by the server's time; the stamp only breaks ties.
CLOCK_TOLERANCE_SECONDS=600
LONGEST_BACKUP_SECONDS=21600

# clock_problem TIME STORED [RUN]: empty when TIME (a stamp) lies from RUN seconds (default:
# LONGEST_BACKUP_SECONDS) plus CLOCK_TOLERANCE_SECONDS before STORED (the server's time, a
# stamp without suffix) to CLOCK_TOLERANCE_SECONDS after it; else "365d 0h ahead of the
# server's time (2026-05-01 03:00:00 UTC)".
clock_problem() {
    skew=$(($(epoch_of "$1") - $(epoch_of "$2")))
    if [ "$skew" -gt 0 ]; then
        [ "$skew" -gt "$CLOCK_TOLERANCE_SECONDS" ] || return 0
        way="ahead of"
    else
        [ $((-skew)) -gt $((CLOCK_TOLERANCE_SECONDS + ${3:-$LONGEST_BACKUP_SECONDS})) ] || return 0
        way="behind"
    fi
    echo "$(span "${skew#-}") $way the server's time ($(echo "$2" | sed -E 's/^(....)(..)(..)T(..)(..)(..)Z$/\1-\2-\3 \4:\5:\6/') UTC)"
}

# is_hex64 TEXT: whether TEXT is 64 lowercase hex digits (a SHA-256, a restic id).
is_hex64() {
    case "$1" in
        *[!0-9a-f]*) return 1 ;;
    esac
    [ ${#1} -eq 64 ]
}

# sha256_of FILE: the hex SHA-256 of FILE (openssl where the image has it: several
# times faster than sha256sum on CPUs with SHA extensions).
sha256_of() {
    if command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 -r "$1" | cut -c1-64
    else
        sha256sum "$1" | cut -c1-64
    fi
}

md5_of() {
    if command -v openssl >/dev/null 2>&1; then
        openssl dgst -md5 -r "$1" | cut -c1-32
    else
        md5sum "$1" | cut -c1-32
    fi
}

# hex_bytes HEX: writes the bytes that HEX spells (octal escapes: POSIX printf has no \x).
hex_bytes() {
    rest=$1
    while [ -n "$rest" ]; do
        pair=${rest%"${rest#??}"}
        rest=${rest#??}
        # shellcheck disable=SC2059
        printf "\\$(printf %o "0x$pair")"
    done
}

# expected_etag FILE WORKDIR: the ETag an S3 server gives FILE uploaded by the AWS CLI
# with the settings above: its MD5 below PART_BYTES, else the MD5 of the parts' MD5s
# followed by "-<parts>". The server computes it from the bytes it stored, so equal
# ETags prove the stored bytes (servers that encrypt with KMS keys give other ETags).
expected_etag() {
    size=$(wc -c <"$1" | tr -d ' ')
    if [ "$size" -lt "$PART_BYTES" ]; then
        md5_of "$1"
        return
    fi
    parts=0
    : >"$2/part-md5s"
    while [ $((parts * PART_BYTES)) -lt "$size" ]; do
        dd if="$1" bs="$PART_BYTES" skip="$parts" count=1 2>/dev/null | md5sum | cut -c1-32 >>"$2/part-md5s"
        parts=$((parts + 1))
    done
    while read -r part; do hex_bytes "$part"; done <"$2/part-md5s" >"$2/part-md5s.bin"
    echo "$(md5_of "$2/part-md5s.bin")-$parts"
}

# Reads the AWS CLI's time stamps (ISO 8601: "2026-05-01T03:00:00.000Z" from CLI v1,
# "2026-05-01T03:00:00+00:00" from CLI v2, any offset; the HTTP date of a HEAD request
# from CLI v1, "Fri, 01 May 2026 03:00:00 GMT") as stamps in UTC, "20260501T030000Z";
# anything else as "-".
AWK_TIMES='
function days(y, m, d,   era, yoe, doy) {
    if (m <= 2) y--
    era = int(y / 400); yoe = y - era * 400
    doy = int((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468
}
function stamp_of(t,   z, secs, era, doe, yoe, doy, mp, d, m, y) {
    z = int(t / 86400) + 719468; secs = t % 86400
    era = int(z / 146097); doe = z - era * 146097
    yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
    doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100))
    mp = int((5 * doy + 2) / 153); d = doy - int((153 * mp + 2) / 5) + 1
    m = mp < 10 ? mp + 3 : mp - 9; y = yoe + era * 400 + (m <= 2)
    return sprintf("%04d%02d%02dT%02d%02d%02dZ", y, m, d, int(secs / 3600), int(secs % 3600 / 60), secs % 60)
}
function utc_stamp(v,   rest, off, month) {
    if (v ~ /^[A-Z][a-z][a-z], [0-9][0-9] [A-Z][a-z][a-z] [0-9][0-9][0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] GMT$/) {
        month = (index("JanFebMarAprMayJunJulAugSepOctNovDec", substr(v, 9, 3)) + 2) / 3
        if (month != int(month) || month < 1) return "-"
        return stamp_of(days(substr(v, 13, 4) + 0, month, substr(v, 6, 2) + 0) * 86400 \
            + substr(v, 18, 2) * 3600 + substr(v, 21, 2) * 60 + substr(v, 24, 2))
    }
    if (v !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]:[0-9][0-9]/) return "-"
    rest = substr(v, 20); sub(/^[.,][0-9]*/, "", rest)
    off = 0
    if (rest ~ /^[+-][0-9][0-9]:?[0-9][0-9]$/) {
        off = (substr(rest, 2, 2) * 60 + substr(rest, length(rest) - 1, 2)) * 60
        if (substr(rest, 1, 1) == "-") off = -off
    } else if (rest != "Z" && rest != "") return "-"
    return stamp_of(days(substr(v, 1, 4) + 0, substr(v, 6, 2) + 0, substr(v, 9, 2) + 0) * 86400 \
        + substr(v, 12, 2) * 3600 + substr(v, 15, 2) * 60 + substr(v, 18, 2) - off)
}
'

# list_keys BUCKET PREFIX OUT: writes "KEY SIZE STORED" lines for every object under PREFIX,
# STORED being the server's time of its last write (LastModified) as a stamp in UTC.
list_keys() {
    aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'Contents[].[Key, Size, LastModified]' --output text \
        >"$3.raw" || fail "cannot list s3://$1/$2"
    # An empty listing prints "None".
    awk -F '\t' "$AWK_TIMES"'
        $0 == "None" { next }
        { t = utc_stamp($3); if (NF != 3 || t == "-") { print "unexpected listing line: " $0 > "/dev/stderr"; exit 1 }
          print $1, $2, t }' "$3.raw" >"$3" || fail "cannot read the listing of s3://$1/$2"
}

# backup_list BUCKET PREFIX OUT: writes "NAME SIZE STORED" lines, oldest first (by the server's
# time, then the name), for the database dumps under PREFIX (NAME without the prefix). Dumps
# are named by their stamp, <stamp>.dump; other objects (and .incoming/) are ignored.
backup_list() {
    list_keys "$1" "$2" "$3.keys"
    while read -r key size stored; do
        name=${key#"$2"}
        case "$name" in
            *.dump) ! is_stamp "${name%.dump}" || echo "$stored $name $size" ;;
        esac
    done <"$3.keys" | LC_ALL=C sort | awk '{ print $2, $3, $1 }' >"$3"
}

# is_missing ERRORS: whether the AWS CLI's error output says the object does not exist: a
# complete answer of the server, unlike a transfer error (a reset, a timeout, a 5xx).
is_missing() {
    grep -q 'NoSuchKey\|(404)\|Not Found' "$1"
}

# Reads that fail in transfer are tried this many times (beyond the AWS CLI's own retries).
READ_ATTEMPTS=${READ_ATTEMPTS:-3}

# attempt WHAT COMMAND ARGS...: runs COMMAND, a read that returns 0 (done), 2 (a complete
# answer that is not what was hoped for: no such object, not a backup) or 1 (the read failed:
# $work/err says why). A failed read is tried again, READ_ATTEMPTS times in all; returns what
# COMMAND returned last. A read that keeps failing is an error for the caller, never a reason
# to take an older backup.
attempt() {
    what=$1
    shift
    tries=1
    while :; do
        outcome=0
        "$@" || outcome=$?
        [ "$outcome" -eq 1 ] && [ "$tries" -lt "$READ_ATTEMPTS" ] || return "$outcome"
        echo "reading $what failed (attempt $tries of $READ_ATTEMPTS): $(tail -n 1 "$work/err"); trying again" >&2
        sleep "$tries"
        tries=$((tries + 1))
    done
}

# get_whole BUCKET KEY FILE SIZE: downloads a small object (a manifest) into FILE and makes sure
# the whole of it came: the body's MD5 is the object's ETag, or its length is SIZE (what the
# listing said; the ETags of encrypted objects are no MD5s). A body cut short is a failed read,
# even when the answer's Content-Length agrees with it. Returns 0, 2 (no such object) or 1.
get_whole() {
    rm -f "$3"
    aws s3api get-object --bucket "$1" --key "$2" "$3" --query '[ContentLength, ETag]' --output text \
        >"$work/got-head" 2>"$work/err" || {
        is_missing "$work/err" && return 2
        return 1
    }
    read -r got_length got_etag <"$work/got-head"
    got_etag=$(echo "$got_etag" | tr -d '"')
    got_bytes=$(wc -c <"$3" | tr -d ' ')
    if [ "$got_bytes" != "$got_length" ]; then
        echo "s3://$1/$2: $got_bytes bytes read of $got_length" >"$work/err"
        return 1
    fi
    [ "$(md5_of "$3")" = "$got_etag" ] || [ "$got_bytes" = "$4" ] || {
        echo "s3://$1/$2: the body read ($got_bytes bytes) is cut short: the object has ${4:-more} bytes and ETag $got_etag" >"$work/err"
        return 1
    }
}

# head_fields BUCKET KEY QUERY: the fields of a HEAD request (text, QUERY a list that starts
# with ContentLength) into $work/head. Returns 0, 2 (no such object) or 1 (the request failed,
# or its answer was cut: every object's has a Content-Length).
head_fields() {
    if ! aws s3api head-object --bucket "$1" --key "$2" --query "$3" --output text >"$work/head" 2>"$work/err"; then
        is_missing "$work/err" && return 2
        return 1
    fi
    case "$(cut -f1 "$work/head")" in
        '' | *[!0-9]*)
            echo "s3://$1/$2: the answer to a HEAD request has no Content-Length (cut short)" >"$work/err"
            return 1
            ;;
    esac
}

# head_again BUCKET KEY QUERY: a HEAD request that said the object does not match what was
# expected, made again: 2 when it says the same (the object does not match), 1 when it does
# not (a read that went wrong; $work/err says why).
head_again() {
    first=$(cat "$work/head")
    answer=0
    head_fields "$1" "$2" "$3" || answer=$?
    [ "$answer" -ne 0 ] || [ "$(cat "$work/head")" != "$first" ] || return 2
    [ "$answer" -ne 0 ] || echo "s3://$1/$2: two HEAD requests answered differently" >"$work/err"
    [ "$answer" -ne 2 ] || return 2
    return 1
}

# manifest_field FILE NAME: the value of "NAME" in a manifest (one JSON object that
# this project writes, see docs/backups.md): a string without its quotes, a number,
# or null. Empty when absent. Keys are unique across the manifest's levels.
manifest_field() {
    tr -d '\n\r' <"$1" |
        sed -nE "s/.*\"$2\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|[0-9]+|null).*/\1/p" |
        tr -d '"'
}
