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

# is_stamp TEXT: whether TEXT is a backup time stamp, YYYYMMDDTHHMMSSZ (UTC).
is_stamp() {
    case "$1" in
        [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) return 0 ;;
    esac
    return 1
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

# list_keys BUCKET PREFIX OUT: writes "KEY SIZE" lines for every object under PREFIX.
list_keys() {
    aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'Contents[].[Key, Size]' --output text \
        >"$3.raw" || fail "cannot list s3://$1/$2"
    # An empty listing prints "None".
    grep -v '^None$' "$3.raw" >"$3" || true
}

# backup_list BUCKET PREFIX OUT: writes "NAME SIZE" lines, oldest first, for the
# database dumps under PREFIX (NAME without the prefix). Dumps are named by UTC
# time, YYYYMMDDTHHMMSSZ.dump; other objects (and .incoming/) are ignored.
backup_list() {
    list_keys "$1" "$2" "$3.keys"
    while read -r key size; do
        name=${key#"$2"}
        case "$name" in
            *.dump) ! is_stamp "${name%.dump}" || echo "$name $size" ;;
        esac
    done <"$3.keys" | sort >"$3"
}

# manifest_field FILE NAME: the value of "NAME" in a manifest (one JSON object that
# this project writes, see docs/backups.md): a string without its quotes, a number,
# or null. Empty when absent. Keys are unique across the manifest's levels.
manifest_field() {
    tr -d '\n\r' <"$1" |
        sed -nE "s/.*\"$2\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|[0-9]+|null).*/\1/p" |
        tr -d '"'
}
