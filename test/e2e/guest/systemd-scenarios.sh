#!/bin/bash
# Issue-4 scenarios on a real systemd (PID 1 in a systemd-nspawn container):
# socket activation, READY/STATUS, the watchdog, reload, journald fields,
# templated unprivileged agents and the agent.d drop-in mechanism. The
# container shares the host kernel, which has no ip_vs, so the master runs
# with --without-ipvs here (a test-only drop-in); IPVS itself is asserted in
# the QEMU tier.
set -u
. /usr/local/lib/e2e/lib.sh
M=feedbackd-master.service
AD=/etc/feedbackd/agent.d

agent_file() { # name address health
  cat >"$AD/$1.conf" <<CONF
[service]
name = $1
protocol = tcp
port = 80
forwarding = DR
address = $2
monitor = constant
value = $3
CONF
}
jfield() { journalctl -q -u "$M" --no-pager "$@" | grep -q .; }
# jcount MATCH...: how many master journal entries match now. Waiting for
# more than a count taken before an event finds only entries logged after
# it, so that the same event from an earlier scenario (a STOP when S4
# restarts the agent) cannot pass a later check.
jcount() { journalctl -q -u "$M" --no-pager -o cat "$@" | wc -l; }
jmore() { local n=$1; shift; [ "$(jcount "$@")" -gt "$n" ]; }

log "feedbackd systemd tier, $(date -u +%FT%TZ), $(systemctl --version | head -1)"

scenario_start S0 "apt installs the packages (their files in place); nothing is enabled or started by the install"
if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends /root/debs/*.deb >>"$REPORT" 2>&1; then
  pass_note "apt-get install of $(cd /root/debs && echo *.deb)"
else
  fail "apt-get install failed"
fi
for f in /usr/sbin/feedbackd-master /usr/sbin/feedbackd-agent /usr/sbin/feedbackd-agent-sync \
         /usr/lib/systemd/system/feedbackd-master.socket /usr/lib/systemd/system/feedbackd-agent@.service \
         /usr/lib/modules-load.d/lvs-feedbackd.conf /etc/feedbackd/master.conf /etc/feedbackd/agent.conf \
         /usr/share/man/man8/feedbackd-master.8.gz /usr/share/man/man5/feedbackd-agent.conf.5.gz; do
  [ -e "$f" ] || fail "missing $f"
done
for u in feedbackd-master.socket feedbackd-agent-sync.path feedbackd-agent-sync.service; do
  st=$(systemctl is-enabled "$u" 2>/dev/null || true)
  [ "$st" = disabled ] && pass_note "$u is $st after install" || fail "$u is '$st' after install, want disabled"
done
for u in feedbackd-master.socket feedbackd-master.service feedbackd-agent-sync.path feedbackd-agent-sync.service; do
  is_inactive "$u" && pass_note "$u not running after install" || fail "$u started by the install"
done
n=$(systemctl list-units --no-legend --plain 'feedbackd-agent@*' | grep -c . || true)
[ "$n" = 0 ] && pass_note "no feedbackd-agent@ instance after install" || fail "$n feedbackd-agent@ instances after install"
evidence "installed packages" dpkg-query -W 'lvs-feedbackd-*'
# The test's configuration replaces the packaged examples.
install -m644 /root/e2e-etc/master.conf /root/e2e-etc/agent.conf /etc/feedbackd/
scenario_end

scenario_start S1 "socket activation: the socket listens; the master is not running before any connection"
systemctl enable --now feedbackd-master.socket >>"$REPORT" 2>&1 || fail "enable --now feedbackd-master.socket"
wait_for 10 "feedbackd-master.socket active" is_active feedbackd-master.socket
is_inactive "$M" && pass_note "feedbackd-master.service inactive before any connection" || fail "master running before any connection"
evidence "listening sockets" ss -ltn
scenario_end

scenario_start S2 "a drop-in agent file starts a non-root templated agent, which activates the master (READY, status 1 agents); the master is non-root with only CAP_NET_ADMIN"
systemctl enable --now feedbackd-agent-sync.path feedbackd-agent-sync.service >>"$REPORT" 2>&1 || fail "enable the drop-in mechanism"
agent_file web 10.0.0.11 40
wait_for 30 "feedbackd-agent@web.service active" is_active feedbackd-agent@web.service
wait_for 30 "feedbackd-master.service active (READY=1 received)" is_active "$M"
wait_for 20 "master status shows the agent" sh -c "systemctl show -p StatusText --value $M | grep -q '^1 agents'"
evidence "master status" systemctl status --no-pager -n 0 "$M"
apid=$(mainpid feedbackd-agent@web.service); mpid=$(mainpid "$M")
auid=$(awk '/^Uid:/{print $2}' /proc/"$apid"/status)
muid=$(awk '/^Uid:/{print $2}' /proc/"$mpid"/status)
mcap=$(awk '/^CapEff:/{print $2}' /proc/"$mpid"/status)
log "  agent uid=$auid; master uid=$muid CapEff=$mcap"
[ "$auid" != 0 ] && pass_note "agent runs as a non-root user ($auid)" || fail "agent runs as root"
[ "$muid" != 0 ] && pass_note "master runs as a non-root user ($muid)" || fail "master runs as root"
[ "$mcap" = 0000000000001000 ] && pass_note "master holds only CAP_NET_ADMIN" || fail "master capabilities $mcap, want only CAP_NET_ADMIN (0x1000)"
scenario_end

scenario_start S3 "journald: REALSERVER= selects only that realserver's lines; its weight change is there, at PRIORITY=6"
wait_for 20 "journal has REALSERVER=10.0.0.11 WEIGHT=40" jfield REALSERVER=10.0.0.11 WEIGHT=40
evidence "journalctl -u feedbackd-master REALSERVER=10.0.0.11" journalctl -u "$M" --no-pager REALSERVER=10.0.0.11
others=$(journalctl -q -u "$M" --no-pager -o cat REALSERVER=10.0.0.11 | grep -vc 10.0.0.11)
[ "$others" = 0 ] && pass_note "every line selected by REALSERVER= is about 10.0.0.11" || fail "$others lines about other realservers"
prio=$(journalctl -q -u "$M" --no-pager -o verbose REALSERVER=10.0.0.11 WEIGHT=40 | awk -F= '/^ *PRIORITY=/{print $2; exit}')
[ "$prio" = 6 ] && pass_note "weight changes logged at PRIORITY=6 (INFO)" || fail "PRIORITY=$prio"
scenario_end

scenario_start S4 "changing an agent file restarts its instance; the weight follows"
inv=$(prop feedbackd-agent@web.service InvocationID)
sed -i 's/^value = 40/value = 70/' "$AD/web.conf"
wait_for 30 "feedbackd-agent@web restarted" sh -c "[ \"\$(systemctl show -p InvocationID --value feedbackd-agent@web.service)\" != '$inv' ] && systemctl is-active -q feedbackd-agent@web.service"
wait_for 20 "journal has REALSERVER=10.0.0.11 WEIGHT=70" jfield REALSERVER=10.0.0.11 WEIGHT=70
scenario_end

scenario_start S5 "adding a file starts an instance, removing it stops it (and the master quiesces it)"
agent_file db 10.0.0.12 20
wait_for 30 "feedbackd-agent@db.service active" is_active feedbackd-agent@db.service
wait_for 20 "journal has REALSERVER=10.0.0.12 WEIGHT=20" jfield REALSERVER=10.0.0.12 WEIGHT=20
c=$(jcount REALSERVER=10.0.0.12 "REASON=agent sent STOP")
rm "$AD/db.conf"
wait_for 30 "feedbackd-agent@db.service stopped" is_inactive feedbackd-agent@db.service
wait_for 20 "master quiesced 10.0.0.12 (agent sent STOP), logged after the removal" jmore "$c" REALSERVER=10.0.0.12 "REASON=agent sent STOP"
is_active feedbackd-agent@web.service && pass_note "web instance untouched" || fail "web instance stopped"
scenario_end

scenario_start S6 "an invalid file is refused with file:line: key in the sync's journal, no instance for it; the other instance keeps running"
agent_file bad 10.0.0.13 101
# By identifier, not -u: see ipvs-scenarios.sh I12.
wait_for 30 "sync logs bad.conf:8: value" sh -c "journalctl -q -t feedbackd-agent-sync --no-pager | grep -q 'bad.conf:8: value'"
evidence "sync journal" sh -c "journalctl -t feedbackd-agent-sync --no-pager | grep -i bad | tail -3"
is_inactive feedbackd-agent@bad.service && pass_note "no instance for the invalid file" || fail "feedbackd-agent@bad started"
is_active feedbackd-agent@web.service && pass_note "web instance still active" || fail "web instance stopped"
rm "$AD/bad.conf"
scenario_end

scenario_start S7 "reload: a new virtual service appears; systemctl reload refuses a broken file, a raw SIGHUP keeps the running configuration (status, journal, same process)"
pid=$(mainpid "$M")
cat >>/etc/feedbackd/master.conf <<'CONF'

[virtual-service]
name = dns
address = 192.0.2.1
protocol = udp
port = 53
scheduler = rr
CONF
systemctl reload "$M" && pass_note "systemctl reload returned 0" || fail "systemctl reload failed"
wait_for 10 "journal: dns virtual service created" jfield VIRTUAL_SERVICE=dns
cp /etc/feedbackd/master.conf /tmp/master.conf.good
sed -i 's/^scheduler = rr/scheduler = fastest/' /etc/feedbackd/master.conf
line=$(grep -n '^scheduler = fastest' /etc/feedbackd/master.conf | cut -d: -f1)
# systemctl reload checks the file first (ExecReload=feedbackd-master -t):
# a broken file fails the reload command itself, loudly.
if systemctl reload "$M" 2>>"$REPORT"; then fail "systemctl reload succeeded on a broken file"; else pass_note "systemctl reload refused the broken file"; fi
wait_for 10 "journal names master.conf:$line: scheduler" sh -c "journalctl -q -u $M --no-pager | grep -q 'master.conf:$line: scheduler'"
# A bare SIGHUP (kill -HUP) reaches the master itself, which keeps running
# the old configuration and says so in its status.
kill -HUP "$pid"
wait_for 10 "status says the last reload failed" sh -c "systemctl show -p StatusText --value $M | grep -q 'last reload failed: .*master.conf:$line: scheduler'"
wait_for 10 "journal: reload failed; keeping the running configuration" sh -c "journalctl -q -u $M --no-pager | grep -q 'keeping the running configuration'"
[ "$(mainpid "$M")" = "$pid" ] && is_active "$M" && pass_note "same process still running" || fail "master restarted or stopped on a broken reload"
evidence "status after the broken reload" systemctl show -p StatusText --value "$M"
cp /tmp/master.conf.good /etc/feedbackd/master.conf
systemctl reload "$M" && pass_note "good file reloaded" || fail "reload of the good file failed"
wait_for 10 "status clean after a good reload" sh -c "! systemctl show -p StatusText --value $M | grep -q 'reload failed'"
scenario_end

scenario_start S8 "a master frozen with SIGSTOP is killed by the watchdog and restarted by systemd; the agent re-registers"
pid=$(mainpid "$M"); n=$(prop "$M" NRestarts)
kill -STOP "$pid"
wait_for 60 "new master process after the watchdog, active (READY)" sh -c "p=\$(systemctl show -p MainPID --value $M); [ \"\$p\" != 0 ] && [ \"\$p\" != '$pid' ] && systemctl is-active -q $M"
wait_for 10 "systemd logged the watchdog timeout" sh -c "journalctl -q --no-pager -u $M | grep -q 'Watchdog timeout'"
n2=$(prop "$M" NRestarts)
[ "$n2" -gt "$n" ] && pass_note "restarted by systemd (NRestarts $n -> $n2)" || fail "NRestarts $n -> $n2: not restarted by systemd"
# The status is the new process's: READY=1 above came with its STATUS=.
wait_for 30 "agent re-registered (status 1 agents)" sh -c "systemctl show -p StatusText --value $M | grep -q '^1 agents'"
scenario_end

# How long the agent takes to come back is printed, not checked: a time on
# a shared machine is a figure, not a defect.
scenario_start S9 "a master killed with SIGKILL is restarted by systemd; the agent re-registers within 20 s (the time is printed)"
pid=$(mainpid "$M"); n=$(prop "$M" NRestarts)
kill -KILL "$pid"
t0=${EPOCHREALTIME/./}
wait_for 20 "new master process, active (READY)" sh -c "p=\$(systemctl show -p MainPID --value $M); [ \"\$p\" != 0 ] && [ \"\$p\" != '$pid' ] && systemctl is-active -q $M"
n2=$(prop "$M" NRestarts)
[ "$n2" -gt "$n" ] && pass_note "restarted by systemd (NRestarts $n -> $n2)" || fail "NRestarts $n -> $n2: not restarted by systemd"
wait_for 20 "agent re-registered (status 1 agents)" sh -c "systemctl show -p StatusText --value $M | grep -q '^1 agents'"
t=${EPOCHREALTIME/./}
log "  figure: the agent was back $(( (t - t0) / 1000000 )).$(( (t - t0) / 100000 % 10 )) s after the kill (RestartSec=1 included)"
scenario_end

scenario_start S10 "stopping an agent with systemctl sends STOP: the master quiesces it"
c=$(jcount REALSERVER=10.0.0.11 "REASON=agent sent STOP")
systemctl stop feedbackd-agent@web.service
wait_for 20 "master quiesced 10.0.0.11 (agent sent STOP), logged after the stop" jmore "$c" REALSERVER=10.0.0.11 "REASON=agent sent STOP"
scenario_end

log ""
evidence "units" systemctl list-units --no-pager --all 'feedbackd*'
journalctl --no-pager -o short-monotonic >/mnt/out/journal.txt 2>&1
echo DONE >>"$RESULTS"
systemctl --no-block poweroff
