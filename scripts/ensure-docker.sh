#!/usr/bin/env bash
# Makes sure a Docker engine answers. On Debian/Ubuntu as root it installs
# docker.io and starts dockerd in the background when none runs (machines
# without systemd, like CI); elsewhere it says exactly what to do.
set -euo pipefail

sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${sock#unix://}

answers() {
	if command -v docker >/dev/null 2>&1; then
		docker info >/dev/null 2>&1
	else
		curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
	fi
}

answers && exit 0

if ! command -v dockerd >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-docker: installing docker.io from the distribution's packages..." >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iptables >/dev/null
	else
		cat >&2 <<'MSG'
ensure-docker: no Docker engine answers and this script can only install one on
Debian/Ubuntu as root. Install Docker Engine 20.10 or newer
(https://docs.docker.com/engine/install/), start it, and run this again.
MSG
		exit 1
	fi
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "ensure-docker: dockerd is installed but not running; start it (e.g. 'sudo systemctl start docker')." >&2
	exit 1
fi

log=/var/log/wharf-dockerd.log
echo "ensure-docker: starting dockerd in the background (log: $log)..." >&2
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 120); do
	answers && { echo "ensure-docker: engine is up." >&2; exit 0; }
	sleep 0.5
done
echo "ensure-docker: dockerd did not answer within 60 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
