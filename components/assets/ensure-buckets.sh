#!/bin/sh
# Makes sure the workspace's buckets exist on an S3-compatible server, and puts
# the expiry rules on the backup bucket. Idempotent: safe to run again.
# Runs in a Job (official AWS CLI image) because an in-cluster server is not
# reachable from the machine that runs `pulumi up`.
#
# Environment:
#   AWS_ENDPOINT_URL, AWS_DEFAULT_REGION   the server
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   its credentials (from a Secret)
#   BUCKETS                 space-separated bucket names to create when missing
#   LIFECYCLE_BUCKET        bucket that gets the expiry rules (optional)
#   LIFECYCLE_PREFIX        key prefix the rules apply to (empty: whole bucket)
#   LIFECYCLE_RULE_ID       start of the rules' IDs
#   RETENTION_DAYS          objects under the prefix expire after this many days
#   WAIT_SECONDS            how long to wait for the server to answer (default 300)
set -eu
. "$(dirname "$0")/s3-cli.sh"

[ -n "${BUCKETS:-}" ] || fail "BUCKETS is not set"
wait_seconds=${WAIT_SECONDS:-300}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' INT TERM
s3_cli_setup "$work"

# Wait for the server to answer; fail at once on any answer other than "cannot connect".
deadline=$(($(date +%s) + wait_seconds))
until aws s3api list-buckets --output text >/dev/null 2>"$work/err"; do
    if ! grep -qiE 'could not connect|connect timeout|connection (refused|reset)|name resolution|EndpointConnectionError' "$work/err"; then
        fail "$AWS_ENDPOINT_URL refused the request: $(cat "$work/err")"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        fail "$AWS_ENDPOINT_URL did not answer within ${wait_seconds}s: $(cat "$work/err")"
    fi
    echo "waiting for $AWS_ENDPOINT_URL ..."
    sleep 3
done

for bucket in $BUCKETS; do
    if aws s3api head-bucket --bucket "$bucket" >/dev/null 2>"$work/err"; then
        echo "bucket $bucket: exists"
    elif grep -qE '\(404\)|Not Found|NoSuchBucket' "$work/err"; then
        if [ "$AWS_DEFAULT_REGION" = "us-east-1" ]; then
            aws s3api create-bucket --bucket "$bucket" >/dev/null
        else
            aws s3api create-bucket --bucket "$bucket" \
                --create-bucket-configuration "LocationConstraint=$AWS_DEFAULT_REGION" >/dev/null
        fi
        echo "bucket $bucket: created"
    else
        fail "cannot check bucket $bucket: $(cat "$work/err")"
    fi
done

[ -n "${LIFECYCLE_BUCKET:-}" ] || exit 0

rule_id=${LIFECYCLE_RULE_ID:-labeling}
prefix=${LIFECYCLE_PREFIX:-}
days=${RETENTION_DAYS:-}
case "$days" in
    '' | *[!0-9]* | 0) fail "RETENTION_DAYS must be a whole number of days, at least 1 (got '$days')" ;;
esac
case "$prefix$rule_id" in
    *'"'* | *'\'*) fail "LIFECYCLE_PREFIX and LIFECYCLE_RULE_ID must not contain quotes or backslashes" ;;
esac

# One rule with both actions: MinIO refuses a rule whose only action is
# AbortIncompleteMultipartUpload. The bucket belongs to the workspace, so its
# lifecycle configuration is this one rule.
cat >"$work/lifecycle.json" <<EOF
{"Rules": [
  {"ID": "$rule_id-backups", "Filter": {"Prefix": "$prefix"}, "Status": "Enabled",
   "Expiration": {"Days": $days}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
]}
EOF
if aws s3api put-bucket-lifecycle-configuration --bucket "$LIFECYCLE_BUCKET" \
    --lifecycle-configuration "file://$work/lifecycle.json" 2>"$work/err"; then
    echo "bucket $LIFECYCLE_BUCKET: objects under '$prefix' expire after $days days"
elif grep -q 'NotImplemented' "$work/err"; then
    echo "warning: the server does not implement lifecycle rules; only the backup job's own retention removes old backups" >&2
else
    fail "cannot set the lifecycle rules of $LIFECYCLE_BUCKET: $(cat "$work/err")"
fi
