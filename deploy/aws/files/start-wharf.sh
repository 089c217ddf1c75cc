#!/bin/bash
# start-wharf: run `wharf serve` (or `wharf builder`) with its settings.
#
# Static settings come from /etc/wharf/wharf.env (written at boot from the
# Terraform variables); the secrets (MongoDB URI, secrets key, admin token)
# from SSM Parameter Store, SecureString, decrypted with the instance role and
# fetched at every start, so a rotated parameter takes effect at the next
# `systemctl restart wharf`. They live only in /run (tmpfs, root, 0600) and in
# the process environment. If SSM cannot be read, the copy from the previous
# start of this boot is used, so a restart during an SSM outage still works.
set -euo pipefail

CONF=${WHARF_CONF_DIR:-/etc/wharf}
RUN=${WHARF_RUN_DIR:-/run/wharf}
BIN=${WHARF_BIN:-/usr/local/bin/wharf}

# shellcheck source=/dev/null
. "$CONF/instance.env" # ROLE, AWS_REGION, SSM_PREFIX

umask 077
mkdir -p "$RUN"

log() { echo "start-wharf: $*" >&2; }

# quote VALUE so that sourcing gives it back byte for byte: single quotes,
# refusing the two characters that cannot live inside them here.
quote() {
	case $1 in
	*"'"* | *$'\n'*) return 1 ;;
	esac
	printf "'%s'" "$1"
}

# fetch prints the secrets as WHARF_*='...' lines.
fetch() {
	local names=(mongo-uri) name value var
	if [ "$ROLE" = serve ]; then
		names+=(secrets-key admin-token)
	fi
	for name in "${names[@]}"; do
		if ! value=$(aws ssm get-parameter --region "$AWS_REGION" --with-decryption \
			--name "$SSM_PREFIX/$name" --query Parameter.Value --output text); then
			log "cannot read SSM parameter $SSM_PREFIX/$name"
			return 1
		fi
		if [ -z "$value" ] || [ "$value" = None ]; then
			log "SSM parameter $SSM_PREFIX/$name is empty"
			return 1
		fi
		var=WHARF_$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')
		if ! value=$(quote "$value"); then
			log "SSM parameter $SSM_PREFIX/$name holds a quote or a newline"
			return 1
		fi
		printf '%s=%s\n' "$var" "$value"
	done
}

case ${ROLE:-} in
serve | builder) ;;
*)
	log "ROLE must be serve or builder, not '${ROLE:-}'"
	exit 1
	;;
esac

if fetch >"$RUN/secrets.env.new"; then
	mv -f "$RUN/secrets.env.new" "$RUN/secrets.env"
else
	rm -f "$RUN/secrets.env.new"
	if [ ! -s "$RUN/secrets.env" ]; then
		log "no settings: cannot start"
		exit 1
	fi
	log "SSM unavailable: starting with the settings fetched at the previous start"
fi

set -a
# shellcheck source=/dev/null
. "$CONF/wharf.env"
# shellcheck source=/dev/null
. "$RUN/secrets.env"
set +a

exec "$BIN" "$ROLE"
