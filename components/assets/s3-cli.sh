# Sourced by the pod scripts that use the AWS CLI: sets it up for
# S3-compatible servers (Scaleway, MinIO) and defines `fail`.

fail() {
    echo "error: $*" >&2
    exit 1
}

# s3_cli_setup DIR: writes the CLI's config into DIR (a writable scratch directory).
# Path-style addressing, because bucket names as host names do not resolve in a
# cluster; 64 MiB parts, because Scaleway accepts at most 1000 parts per upload.
s3_cli_setup() {
    export AWS_CONFIG_FILE="$1/aws-config"
    printf '[default]\ns3 =\n    addressing_style = path\n    multipart_chunksize = 64MB\n' >"$AWS_CONFIG_FILE"
    # boto3 >= 1.36 and CLI v2 send checksum headers that several S3-compatible servers reject.
    export AWS_REQUEST_CHECKSUM_CALCULATION="${AWS_REQUEST_CHECKSUM_CALCULATION:-when_required}"
    export AWS_RESPONSE_CHECKSUM_VALIDATION="${AWS_RESPONSE_CHECKSUM_VALIDATION:-when_required}"
    export AWS_PAGER=""
    [ -n "${AWS_ENDPOINT_URL:-}" ] || fail "AWS_ENDPOINT_URL is not set"
    [ -n "${AWS_DEFAULT_REGION:-}" ] || fail "AWS_DEFAULT_REGION is not set"
}

# backup_list BUCKET PREFIX OUT: writes "NAME SIZE" lines, oldest first, for the
# backups under PREFIX (NAME without the prefix). Backups are named by UTC
# time, YYYYMMDDTHHMMSSZ.dump; other objects are ignored.
backup_list() {
    aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'Contents[].[Key, Size]' --output text \
        >"$3.raw" || fail "cannot list s3://$1/$2"
    while read -r key size; do
        name=${key#"$2"}
        case "$name" in
            [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.dump) echo "$name $size" ;;
        esac
    done <"$3.raw" | sort >"$3"
}
