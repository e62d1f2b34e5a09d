#!/bin/sh
# Makes sure the workspace's buckets exist on an S3-compatible server, and puts
# the clean-up rule on the backup bucket. Idempotent: safe to run again.
# Runs in a Job (official AWS CLI image) because an in-cluster server is not
# reachable from the machine that runs `pulumi up`.
#
# Environment:
#   AWS_ENDPOINT_URL, AWS_DEFAULT_REGION   the server
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   its credentials (from a Secret)
#   BUCKETS                 space-separated bucket names to create when missing
#   LIFECYCLE_BUCKET        bucket that gets the clean-up rule (optional)
#   LIFECYCLE_PREFIX        the temporary upload prefix the rule applies to,
#                           <workspace key>/database/.incoming/; anything not
#                           ending in /.incoming/ is refused: the rule never
#                           expires backups (the backup job's retention does)
#   LIFECYCLE_RULE_ID       start of the rule's ID (labeling-<workspace key>)
#   LIFECYCLE_EXPIRATION_DAYS  objects under the prefix expire after this many
#                           days (default 1); unfinished multipart uploads there
#                           are aborted after 1 day
#   WAIT_SECONDS            how long to wait for the server to answer (default 300)
set -eu
. "$(dirname "$0")/s3-cli.sh"

[ -n "${BUCKETS:-}" ] || fail "BUCKETS is not set"
wait_seconds=${WAIT_SECONDS:-300}

# The rule's settings are checked before anything is done on the server.
if [ -n "${LIFECYCLE_BUCKET:-}" ]; then
    rule_id=${LIFECYCLE_RULE_ID:-labeling}
    prefix=${LIFECYCLE_PREFIX:-}
    days=${LIFECYCLE_EXPIRATION_DAYS:-1}
    case "$days" in
        '' | *[!0-9]* | 0*) fail "LIFECYCLE_EXPIRATION_DAYS must be a whole number of days, at least 1 (got '$days')" ;;
    esac
    case "$prefix" in
        /*) fail "LIFECYCLE_PREFIX must not start with / (got '$prefix')" ;;
        */.incoming/) ;;
        *) fail "LIFECYCLE_PREFIX must be a temporary upload prefix ending in /.incoming/ (got '$prefix'): the rule never expires backups" ;;
    esac
    case "$prefix$rule_id" in
        *'"'* | *'\'*) fail "LIFECYCLE_PREFIX and LIFECYCLE_RULE_ID must not contain quotes or backslashes" ;;
    esac
fi

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

# One rule with both actions, filtered on the temporary upload prefix: MinIO refuses
# a rule whose only action is AbortIncompleteMultipartUpload (and ignores that action,
# removing stale multipart uploads by itself after 24 hours). The bucket belongs to
# the workspace, so its lifecycle configuration is this one rule: it replaces the
# rule of the same ID that earlier versions put here, which expired the whole
# workspace prefix.
cat >"$work/lifecycle.json" <<EOF
{"Rules": [
  {"ID": "$rule_id-backups", "Filter": {"Prefix": "$prefix"}, "Status": "Enabled",
   "Expiration": {"Days": $days}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
]}
EOF
if aws s3api put-bucket-lifecycle-configuration --bucket "$LIFECYCLE_BUCKET" \
    --lifecycle-configuration "file://$work/lifecycle.json" 2>"$work/err"; then
    echo "bucket $LIFECYCLE_BUCKET: temporary uploads under '$prefix' expire after $days day(s); nothing else expires"
elif grep -q 'NotImplemented' "$work/err"; then
    echo "warning: the server does not implement lifecycle rules; uploads that a failed backup leaves under '$prefix' stay until someone deletes them" >&2
else
    fail "cannot set the lifecycle rules of $LIFECYCLE_BUCKET: $(cat "$work/err")"
fi
