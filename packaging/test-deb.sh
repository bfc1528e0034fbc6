#!/usr/bin/env bash
# The package as an operations team meets it (run by .ci/run, as root, on a machine it may
# change): dpkg -i puts every file where the operating chapter says, the unit verifies, the
# node starts exactly as the unit's ExecStart says, as the package's user, with the sample
# configuration, and answers /status; reinstalling (an upgrade) keeps the data and the key;
# dpkg -r keeps the configuration and the data; dpkg -P removes the configuration, keeps the
# data, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/gridledger_*.deb | head -n 1)
gw=$(ls -t target/debian/gridledger-gateway_*.deb | head -n 1)
sim=$(ls -t target/debian/gridledger-relay-sim_*.deb | head -n 1)
fail() { echo "test-deb: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs a package)"

echo "== dpkg -i $deb"
dpkg -i "$deb"
for f in /usr/bin/gridledger /lib/systemd/system/gridledger.service /etc/gridledger/gridledger.toml \
         /usr/share/man/man1/gridledger.1.gz /usr/share/bash-completion/completions/gridledger \
         /usr/share/doc/gridledger/prometheus/gridledger.rules.yml \
         /usr/share/doc/gridledger/grafana/gridledger-nodes.json; do
  [ -e "$f" ] || fail "$f is not installed"
done
getent passwd gridledger >/dev/null || fail "no user gridledger"
[ "$(stat -c %U:%a /var/lib/gridledger)" = gridledger:750 ] || fail "/var/lib/gridledger: $(stat -c %U:%a /var/lib/gridledger)"
[ "$(stat -c %G:%a /etc/gridledger/gridledger.toml)" = gridledger:640 ] || fail "config: $(stat -c %G:%a /etc/gridledger/gridledger.toml)"
cmp -s /etc/gridledger/gridledger.toml <(/usr/bin/gridledger print config) || fail "the installed config is not the binary's"
systemd-analyze verify /lib/systemd/system/gridledger.service
echo "systemd-analyze security: $(systemd-analyze security --offline=true --no-pager /lib/systemd/system/gridledger.service | tail -n 1)"
MANPAGER=cat man gridledger | grep -q SUBCOMMANDS || fail "man gridledger does not render"

start_node() {
  # ExecStart, word for word, as the unit's user, in its working directory.
  local exec
  exec=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/gridledger.service)
  (cd /var/lib/gridledger && exec runuser -u gridledger -- env GRIDLEDGER_LISTEN=127.0.0.1:5904 $exec) \
    > /tmp/test-deb-node.log 2>&1 &
  node=$!
  for _ in $(seq 1 100); do
    if curl -sf http://127.0.0.1:5904/status | grep -q '"height"'; then return 0; fi
    sleep 0.2
  done
  cat /tmp/test-deb-node.log >&2
  fail "the node did not answer /status"
}
stop_node() { kill "$node"; wait "$node" || true; }

echo "== the node, as the unit starts it"
start_node
stop_node
[ -s /var/lib/gridledger/miner.key ] || fail "no miner key in /var/lib/gridledger"
[ "$(stat -c %U /var/lib/gridledger/chain.redb)" = gridledger ] || fail "the chain is not the service user's"
key=$(sha256sum /var/lib/gridledger/miner.key)

echo "== an upgrade (the package installed again) keeps the data and the key"
dpkg -i "$deb"
[ "$(sha256sum /var/lib/gridledger/miner.key)" = "$key" ] || fail "the upgrade changed the key"
start_node
stop_node

echo "== a backup of the running node, as its user; a restore as root; the node starts on it"
start_node
rm -f /tmp/test-deb.backup
runuser -u gridledger -- gridledger backup --data-dir /var/lib/gridledger --out /tmp/test-deb.backup --with-key \
  | tee /tmp/test-deb-backup.log
grep -q "copied from the running node" /tmp/test-deb-backup.log || fail "the backup did not go through the node's control socket"
stop_node
gridledger restore --from /tmp/test-deb.backup --data-dir /var/lib/gridledger --force | tee /tmp/test-deb-restore.log
grep -q "^ok: " /tmp/test-deb-restore.log || fail "the restore did not verify"
# blocks.dat only if the copy had blocks (a node at genesis has committed none; it makes
# the file at its next start).
for f in chain.redb miner.key blocks.dat; do
  [ -e /var/lib/gridledger/$f ] || [ $f = blocks.dat ] || fail "restore left no $f"
  [ ! -e /var/lib/gridledger/$f ] || [ "$(stat -c %U /var/lib/gridledger/$f)" = gridledger ] \
    || fail "restored $f is not the service user's"
done
[ "$(sha256sum /var/lib/gridledger/miner.key)" = "$key" ] || fail "the restore changed the key"
start_node
stop_node
rm -f /tmp/test-deb.backup /var/lib/gridledger/*.replaced-*

echo "== dpkg -r: the binary goes, the configuration and the data stay"
dpkg -r gridledger
[ ! -e /usr/bin/gridledger ] || fail "/usr/bin/gridledger is still there"
[ -e /etc/gridledger/gridledger.toml ] || fail "dpkg -r removed the configuration"
[ -e /var/lib/gridledger/miner.key ] || fail "dpkg -r removed the data"

echo "== dpkg -P: the configuration goes, the data stays, and it says so"
said=$(dpkg -P gridledger 2>&1)
echo "$said"
[ ! -e /etc/gridledger ] || fail "dpkg -P left /etc/gridledger"
[ -e /var/lib/gridledger/miner.key ] || fail "dpkg -P removed the data"
echo "$said" | grep -q "left /var/lib/gridledger" || fail "dpkg -P did not say what it left"

echo "== the gateway's and relay-sim's packages"
dpkg -i "$sim" "$gw"
for f in /usr/bin/gridledger-gateway /usr/bin/gridledger-relay-sim /etc/gridledger/gateway.env \
         /etc/gridledger/relay-sim.env /lib/systemd/system/gridledger-gateway.service \
         /lib/systemd/system/gridledger-relay-sim.service; do
  [ -e "$f" ] || fail "$f is not installed"
done
id -nG gridledger | grep -qw dialout || fail "the gateway's user is not in dialout"
for u in gridledger-gateway gridledger-relay-sim; do
  systemd-analyze verify /lib/systemd/system/$u.service
  echo "systemd-analyze security $u: $(systemd-analyze security --offline=true --no-pager /lib/systemd/system/$u.service | tail -n 1)"
done
# Each started as its unit says (ExecStart, the user, the settings file with a setting
# uncommented), and read with mbpoll: relay-sim, then the gateway recording it by profile.
unit_exec() { sed -n 's/^ExecStart=//p' "/lib/systemd/system/$1.service"; }
sed -i 's/^#RELAY_SIM_LISTEN=.*/RELAY_SIM_LISTEN=127.0.0.1:5910/' /etc/gridledger/relay-sim.env
(set -a; . /etc/gridledger/relay-sim.env; set +a; cd /var/lib/gridledger && exec runuser -u gridledger -- $(unit_exec gridledger-relay-sim)) \
  > /tmp/test-deb-sim.log 2>&1 &
sim_pid=$!
cp profiles/relay-sim-live.toml /etc/gridledger/ && chmod 0644 /etc/gridledger/relay-sim-live.toml
sed -i 's/^#GATEWAY_LISTEN=.*/GATEWAY_LISTEN=127.0.0.1:5911/' /etc/gridledger/gateway.env
echo "GATEWAY_DEVICES=/etc/gridledger/relay-sim-live.toml,unit=1,relay=9,upstream=tcp://127.0.0.1:5910" >> /etc/gridledger/gateway.env
sleep 1
(set -a; . /etc/gridledger/gateway.env; set +a; cd /var/lib/gridledger && exec runuser -u gridledger -- $(unit_exec gridledger-gateway)) \
  > /tmp/test-deb-gw.log 2>&1 &
gw_pid=$!
ok=no
for _ in $(seq 1 50); do
  if mbpoll -m tcp -p 5910 -a 1 -t 3 -r 1 -c 6 -1 127.0.0.1 >/dev/null 2>&1 \
     && mbpoll -m tcp -p 5911 -a 1 -t 3 -r 1 -c 6 -1 127.0.0.1 >/dev/null 2>&1; then ok=yes; break; fi
  sleep 0.2
done
kill "$sim_pid" "$gw_pid"; wait "$sim_pid" "$gw_pid" || true
[ $ok = yes ] || { cat /tmp/test-deb-sim.log /tmp/test-deb-gw.log >&2; fail "relay-sim or the gateway did not answer mbpoll"; }
rm -f /etc/gridledger/relay-sim-live.toml
dpkg -P gridledger-gateway gridledger-relay-sim
[ ! -e /etc/gridledger ] || fail "purging left /etc/gridledger: $(ls /etc/gridledger)"
[ ! -e /usr/bin/gridledger-gateway ] || fail "purging left the gateway"
rm -rf /var/lib/gridledger
echo "test-deb: ok"
