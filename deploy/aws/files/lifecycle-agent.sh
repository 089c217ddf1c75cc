#!/bin/bash
# wharf-lifecycle: drain this instance before its Auto Scaling group
# terminates it (scale-in, instance refresh, replacement).
#
# The group's termination lifecycle hook holds the instance in
# Terminating:Wait; the metadata service then reports the target lifecycle
# state "Terminated". On that, in this order:
#   1. leave the target group and wait until the ALB has deregistered the
#      instance (new requests go elsewhere, requests in flight finish within
#      the deregistration delay);
#   2. `systemctl stop wharf`: SIGTERM, wharf drains (readyz fails, in-flight
#      requests finish, every container of the node is removed) and exits;
#   3. complete the lifecycle action, so the group terminates the instance.
# While it drains it records heartbeats, so the hook's timeout is not the
# drain's limit. If this agent dies, the hook's timeout (default result
# CONTINUE) still lets the instance go.
set -uo pipefail

CONF=${WHARF_CONF_DIR:-/etc/wharf}
IMDS=${IMDS_URL:-http://169.254.169.254}
POLL=${POLL_SECONDS:-5}
HEARTBEAT=${HEARTBEAT_SECONDS:-60}

# shellcheck source=/dev/null
. "$CONF/instance.env" # AWS_REGION, ASG_NAME, HOOK_NAME, TARGET_GROUP_ARN, LISTEN_PORT, DEREGISTRATION_WAIT

log() { echo "wharf-lifecycle: $*" >&2; }

# imds PATH reads instance metadata with an IMDSv2 session token.
imds() {
	local token
	token=$(curl -sf -m 2 -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') || return 1
	curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}

until instance=$(imds instance-id) && [ -n "$instance" ]; do
	sleep "$POLL"
done

while :; do
	state=$(imds autoscaling/target-lifecycle-state) || state=unknown
	if [ "$state" = Terminated ]; then
		break
	fi
	sleep "$POLL"
done
log "instance $instance is being terminated: draining"

# Heartbeats in the background; on TERM it also ends its pending sleep.
(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	while :; do
		sleep "$HEARTBEAT" &
		sleeper=$!
		wait "$sleeper"
		aws autoscaling record-lifecycle-action-heartbeat --region "$AWS_REGION" \
			--auto-scaling-group-name "$ASG_NAME" --lifecycle-hook-name "$HOOK_NAME" --instance-id "$instance" ||
			log "heartbeat failed"
	done
) &
heartbeat=$!

if [ -n "${TARGET_GROUP_ARN:-}" ]; then
	target="Id=$instance,Port=$LISTEN_PORT"
	aws elbv2 deregister-targets --region "$AWS_REGION" --target-group-arn "$TARGET_GROUP_ARN" --targets "$target" ||
		log "deregister-targets failed (the group may have deregistered the instance already)"
	timeout "$DEREGISTRATION_WAIT" aws elbv2 wait target-deregistered --region "$AWS_REGION" \
		--target-group-arn "$TARGET_GROUP_ARN" --targets "$target" ||
		log "deregistration not confirmed within ${DEREGISTRATION_WAIT}s; draining anyway"
fi

systemctl stop wharf.service || log "systemctl stop wharf failed"
log "wharf stopped"

kill "$heartbeat" 2>/dev/null
wait "$heartbeat" 2>/dev/null

for attempt in 1 2 3 4 5; do
	if aws autoscaling complete-lifecycle-action --region "$AWS_REGION" --auto-scaling-group-name "$ASG_NAME" \
		--lifecycle-hook-name "$HOOK_NAME" --instance-id "$instance" --lifecycle-action-result CONTINUE; then
		log "lifecycle action completed"
		exit 0
	fi
	log "complete-lifecycle-action failed (attempt $attempt)"
	sleep "$attempt"
done
log "giving up: the hook's timeout will let the instance go"
exit 1
