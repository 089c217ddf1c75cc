#!/bin/bash
# wharf-egress: tenant containers may not open connections to
# BLOCKED_CIDRS (by default the instance metadata service and the VPC:
# MongoDB, the other nodes). Rules go into Docker's DOCKER-USER chain, which
# sees only forwarded traffic: the host itself (wharf, its store connection,
# its requests to the containers' bridge IPs) is unaffected. Idempotent; run
# after every start of Docker.
set -euo pipefail

CONF=${WHARF_CONF_DIR:-/etc/wharf}
# shellcheck source=/dev/null
. "$CONF/instance.env" # BLOCKED_CIDRS

iptables -w -N DOCKER-USER 2>/dev/null || true
for cidr in $BLOCKED_CIDRS; do
	rule=(DOCKER-USER -d "$cidr" -m conntrack --ctstate NEW -j REJECT --reject-with icmp-net-prohibited)
	iptables -w -C "${rule[@]}" 2>/dev/null || iptables -w -I "${rule[@]}"
done
