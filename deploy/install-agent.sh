#!/usr/bin/env bash
# Install or update the commune radio edge agent on a Raspberry Pi-class Debian machine (12 or 13).
# Idempotent: run it again to update the code or to rewrite the config from new arguments.
#
#   sudo deploy/install-agent.sh --node-id cum-01 --username node-cum-01 --password '…' \
#        --mqtt-url mqtts://radio.example.vn:8883 [--http-base https://radio.example.vn] \
#        [--audio-device plughw:CARD=Headphones,DEV=0] [--relay-line 17 [--relay-chip gpiochip0] [--relay-active-low]] \
#        [--warmup-ms 1500] [--source DIR] [--no-apt] [--skip-npm] [--no-start] [--dry-run]
#
# What it does: installs the Debian packages the field backend runs (alsa-utils, gpiod, polkitd;
# modemmanager if asked), checks Node.js ≥ 20, creates the system user radio-agent in the groups
# audio and gpio, copies the code to /opt/commune-radio and installs its npm dependencies, writes
# /etc/commune-radio/agent.json from the arguments (the previous one is kept as agent.json.bak),
# lets radio-agent reboot the machine (polkit) and use /dev/gpiochip* (udev), and enables the service.
set -euo pipefail

APP_DIR=/opt/commune-radio
CONF_DIR=/etc/commune-radio
CONF_FILE=$CONF_DIR/agent.json
DATA_DIR=/var/lib/commune-radio
UNIT=radio-agent.service
AGENT_USER=radio-agent

SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_ID='' USERNAME='' PASSWORD='' MQTT_URL='' HTTP_BASE=''
AUDIO_DEVICE=default RELAY_CHIP=gpiochip0 RELAY_LINE='' RELAY_ACTIVE_LOW=false WARMUP_MS=1500
WITH_MODEM=false NO_APT=false SKIP_NPM=false NO_START=false DRY_RUN=false

die() { printf 'install-agent: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }
# Every change to the machine goes through run (or write_file), so --dry-run shows it instead.
run() {
  if [[ $DRY_RUN == true ]]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
# write_file PATH MODE OWNER:GROUP < content
write_file() {
  local path=$1 mode=$2 owner=$3 tmp
  if [[ $DRY_RUN == true ]]; then printf '+ write %s (%s %s):\n' "$path" "$mode" "$owner"; sed 's/^/|   /'; return; fi
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  mv -f "$tmp" "$path"
}

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --node-id) NODE_ID=${2:?}; shift 2 ;;
    --username) USERNAME=${2:?}; shift 2 ;;
    --password) PASSWORD=${2:?}; shift 2 ;;
    --mqtt-url) MQTT_URL=${2:?}; shift 2 ;;
    --http-base) HTTP_BASE=${2:?}; shift 2 ;;
    --audio-device) AUDIO_DEVICE=${2:?}; shift 2 ;;
    --relay-chip) RELAY_CHIP=${2:?}; shift 2 ;;
    --relay-line) RELAY_LINE=${2:?}; shift 2 ;;
    --relay-active-low) RELAY_ACTIVE_LOW=true; shift ;;
    --warmup-ms) WARMUP_MS=${2:?}; shift 2 ;;
    --with-modem) WITH_MODEM=true; shift ;;
    --source) SOURCE_DIR=$(cd "${2:?}" && pwd); shift 2 ;;
    --no-apt) NO_APT=true; shift ;;
    --skip-npm) SKIP_NPM=true; shift ;;
    --no-start) NO_START=true; shift ;;
    --dry-run) DRY_RUN=true; shift ;;
    -h|--help) usage 0 ;;
    *) printf 'install-agent: unknown argument %s\n\n' "$1" >&2; usage 2 ;;
  esac
done

[[ $DRY_RUN == true || $EUID -eq 0 ]] || die 'run as root (sudo)'
[[ -f $SOURCE_DIR/edge-agent/src/cli.ts ]] || die "$SOURCE_DIR does not look like the commune-radio source (no edge-agent/src/cli.ts); use --source DIR"
[[ -z $RELAY_LINE || $RELAY_LINE =~ ^[0-9]+$ ]] || die "--relay-line must be a line number, got '$RELAY_LINE'"
[[ $WARMUP_MS =~ ^[0-9]+$ ]] || die "--warmup-ms must be a number of milliseconds, got '$WARMUP_MS'"

WRITE_CONFIG=false
if [[ -n $NODE_ID$USERNAME$PASSWORD$MQTT_URL ]]; then
  [[ -n $NODE_ID && -n $USERNAME && -n $PASSWORD && -n $MQTT_URL ]] || die '--node-id, --username, --password and --mqtt-url go together'
  [[ $NODE_ID =~ ^[a-z0-9][a-z0-9_-]{0,63}$ ]] || die "--node-id must match ^[a-z0-9][a-z0-9_-]{0,63}$, got '$NODE_ID'"
  WRITE_CONFIG=true
elif [[ ! -f $CONF_FILE ]]; then
  die "no $CONF_FILE yet: give --node-id, --username, --password and --mqtt-url (from the controller's node page)"
fi

# ---- packages ----
if [[ $NO_APT == false ]]; then
  pkgs=(alsa-utils gpiod polkitd)
  [[ $WITH_MODEM == true ]] && pkgs+=(modemmanager)
  say "installing ${pkgs[*]}"
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
fi

NODE_BIN=/usr/bin/node
node_major=$("$NODE_BIN" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( node_major < 20 )); then
  cat >&2 <<'EOF'
install-agent: Node.js 20 or newer is needed at /usr/bin/node.
  Debian 13: apt-get install nodejs npm        (Node 20)
  Debian 12: Node 18 in the archive is too old; use NodeSource's Node 20 repository
             (https://github.com/nodesource/distributions) or the official arm64/armv7l tarball,
             and make sure /usr/bin/node is that version.
EOF
  [[ $DRY_RUN == true ]] || exit 1
fi

# ---- user, groups, device access ----
getent group gpio >/dev/null || run groupadd --system gpio
if ! id -u "$AGENT_USER" >/dev/null 2>&1; then
  say "creating system user $AGENT_USER"
  run useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin --user-group "$AGENT_USER"
fi
run usermod -a -G audio,gpio "$AGENT_USER"

# Raspberry Pi OS already gives /dev/gpiochip* to the gpio group; plain Debian leaves them root-only.
write_file /etc/udev/rules.d/60-commune-radio-gpio.rules 0644 root:root <<'EOF'
# commune-radio: the agent (group gpio) drives the amplifier relay through libgpiod.
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF
run udevadm control --reload-rules
run udevadm trigger --subsystem-match=gpio

# reboot() runs `systemctl reboot`: logind asks polkit, which lets this one user do it.
run install -d -m 0755 /etc/polkit-1/rules.d
write_file /etc/polkit-1/rules.d/50-commune-radio.rules 0644 root:root <<EOF
// commune-radio: the edge agent may reboot the cluster computer on the controller's command.
polkit.addRule(function (action, subject) {
  if (subject.user == "$AGENT_USER" && action.id.indexOf("org.freedesktop.login1.reboot") == 0) {
    return polkit.Result.YES;
  }
});
EOF

# ---- code ----
say "copying the agent to $APP_DIR"
run install -d -m 0755 "$APP_DIR"
for part in package.json package-lock.json tsconfig.json schemas edge-agent audio-pipeline firmware-sim deploy; do
  [[ -e $SOURCE_DIR/$part ]] || continue
  [[ $SOURCE_DIR -ef $APP_DIR ]] && continue
  run rm -rf "${APP_DIR:?}/$part"
  run cp -a "$SOURCE_DIR/$part" "$APP_DIR/$part"
done
if [[ $SKIP_NPM == false ]]; then
  say 'installing npm dependencies (production)'
  run bash -c "cd '$APP_DIR' && npm ci --omit=dev --no-audit --no-fund"
elif [[ ! -d $APP_DIR/node_modules && $DRY_RUN == false ]]; then
  die "--skip-npm but $APP_DIR/node_modules is missing"
fi
run chown -R root:root "$APP_DIR"

# ---- config ----
run install -d -m 0750 -o root -g "$AGENT_USER" "$CONF_DIR"
if [[ $WRITE_CONFIG == true ]]; then
  # JSON built by node from the environment: quotes or backslashes in a password stay intact.
  json=$(A_NODE_ID=$NODE_ID A_USERNAME=$USERNAME A_PASSWORD=$PASSWORD A_MQTT_URL=$MQTT_URL A_HTTP_BASE=$HTTP_BASE \
    A_DEVICE=$AUDIO_DEVICE A_CHIP=$RELAY_CHIP A_LINE=$RELAY_LINE A_ACTIVE_LOW=$RELAY_ACTIVE_LOW A_WARMUP=$WARMUP_MS A_DATA=$DATA_DIR \
    "$NODE_BIN" -e '
      const e = process.env;
      const linux = { audio: { device: e.A_DEVICE }, warmupMs: Number(e.A_WARMUP) };
      if (e.A_LINE) linux.relay = { chip: e.A_CHIP, line: Number(e.A_LINE), activeLow: e.A_ACTIVE_LOW === "true" };
      const cfg = { nodeId: e.A_NODE_ID, username: e.A_USERNAME, password: e.A_PASSWORD, mqttUrl: e.A_MQTT_URL,
        ...(e.A_HTTP_BASE ? { httpBase: e.A_HTTP_BASE } : {}), dataDir: e.A_DATA, hardware: "linux", linux };
      process.stdout.write(JSON.stringify(cfg, null, 2) + "\n");')
  if [[ -f $CONF_FILE ]] && ! printf '%s\n' "$json" | cmp -s - "$CONF_FILE"; then
    run cp -a "$CONF_FILE" "$CONF_FILE.bak"
    say "previous config kept as $CONF_FILE.bak"
  fi
  printf '%s\n' "$json" | write_file "$CONF_FILE" 0640 "root:$AGENT_USER"
  say "wrote $CONF_FILE"
fi

# ---- service ----
write_file "/etc/systemd/system/$UNIT" 0644 root:root <"$SOURCE_DIR/deploy/$UNIT"
run systemctl daemon-reload
if [[ $NO_START == true ]]; then
  run systemctl enable "$UNIT"
else
  run systemctl enable "$UNIT"
  # restart, not start: a second run must load the new code and config.
  run systemctl restart "$UNIT"
  say "started; follow it with: journalctl -u $UNIT -f"
fi
