# Issue 19 on the real system, under the packaged agent unit's sandbox
# (DynamicUser, no capabilities): an agent instance whose http monitor
# checks a real web server in a realserver's namespace, its HAProxy
# agent-check answered to the director, and a drain or maintenance set
# from the realserver's admin file seen in the kernel's IPVS table.
# Sourced by ipvs-scenarios.sh after vsopts-scenarios.sh, in the guest,
# so it runs with what those left:
#   - three agents, feedbackd-agent@rs1..rs3, offering tcp/80 under web,
#     web-wlc and web-sed (and V1-V4's services), with the shared secret
#     of I13 (agent.conf's secret-file, the template's LoadCredential=
#     drop-in), so a new instance of the template has it too;
#   - feedbackd-agent-sync.path enabled (I12): a file in agent.d starts
#     its instance, and removing it stops the instance;
#   - ipvs-scenarios.sh's and ops-scenarios.sh's helpers (agent, table,
#     table_is, agents_are, reload_ok, jn/jmore, stays_for, sample_start/
#     sample_stop, ctl_json, end).
# What A1 and A2 add is theirs alone, so that nothing the later scenarios
# (I-netlink, I18) rely on moves: a new instance feedbackd-agent@rs1http
# in rs1's namespace, with its own agent.d file and NetworkNamespacePath=
# drop-in, offering tcp/8090, which no other agent offers, to a new
# virtual service web-agent ($AVIP:$APORT) added by reload; its own web
# server on port 8090 in rs1 (I8's tiny perl server, reading the whole
# request), so that stopping it touches nothing else; and its own admin
# file, named by admin-file in the instance's file only: written in
# agent.conf, feedbackd-agent-sync would restart every instance. All of
# it is removed at the end of A2, and the table checked against the one
# before A1.

AVIP=192.0.2.70 # web-agent: wrr, max-weight 100 (the default: weight = health)
APORT=8090      # the service: the web server in rs1, and the virtual service's port
ACPORT=9777     # agent-check-listen (feedbackd-agent.conf(5)'s example port)
AINST=rs1http
AU=$(agent $AINST)
ASVC=www-a1
AADMIN=/etc/feedbackd/admin

# a_dest: "<forwarding> <weight>" of $RS1:$APORT under tcp $AVIP:$APORT
# in the kernel's table, empty if there is no such destination.
a_dest() { ipvsadm -Ln -t "$AVIP:$APORT" 2>/dev/null | awk -v d="$RS1:$APORT" '$1 == "->" && $2 == d { print $3, $4 }'; }
a_is() { [ "$(a_dest)" = "Route $1" ]; }
a_gone() { ipvsadm -Ln -t "$AVIP:$APORT" >/dev/null 2>&1 && [ -z "$(a_dest)" ]; }
# a_watch: the lines of web, web-wlc and web-sed (tcp/80 of $VIP1-$VIP3)
# in ipvsadm -Sn, which rs1-rs3's agents own and which must not move.
# (Not the whole table: V1-V4's services, no longer configured, keep
# their quiesced destinations until the kernel's connection entries
# expire, which may happen at any time during A1 or A2.)
a_watch() { table | grep -F -e "-t $VIP1:80 " -e "-t $VIP2:80 " -e "-t $VIP3:80 "; }
# ac_line: one agent-check answer as HAProxy gets it, from the director
# (the root namespace, over br0): connect to $RS1:$ACPORT, read one line.
ac_line() { timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r l <&3 && printf "%s\n" "$l"' _ "$RS1" "$ACPORT" 2>/dev/null; }
# ac_is ERE: the answer is a whole line matching ERE; AC_LAST keeps it
# (wait_for runs the test in this shell).
AC_LAST=
AC_SEEN=()
ac_is() { AC_LAST=$(ac_line); printf '%s\n' "$AC_LAST" | grep -Eqx -- "$1"; }
# ac_answer ERE WHEN: wait for that answer, and keep it for the report.
ac_answer() {
  local t0
  t0=$(ms)
  if wait_for 20 "agent-check answer from the director ($RS1:$ACPORT), $2: /$1/" ac_is "$1"; then
    log "  agent-check answer '$AC_LAST' ($(secs_since "$t0") s)"
  else
    log "  last agent-check answer: '$AC_LAST'"
  fi
  AC_SEEN+=("$2: '$AC_LAST'")
}
# a_session: "PEER SINCE HEALTH" of the agent session offering
# tcp/$APORT from $RS1, as the master's feedbackctl agents lists it.
a_session() {
  ctl_json agents $RS1 | jq -r --arg s "tcp/$APORT" \
    '.agents[] | select(any(.services[]; .service == $s)) | "\(.peer) \(.since) \(.services[] | select(.service == $s) | .health)"'
}
# a_session_is PEER SINCE HEALTH: that very session, with that health.
a_session_is() { [ "$(a_session)" = "$*" ]; }
# nagents: the number in the master's status text ("N agents, ...").
nagents() { systemctl show -p StatusText --value "$M" | awk '{ print $1 }'; }
# web_pid: the process listening on $APORT in rs1, empty if none.
web_pid() { ip netns exec rs1 ss -Hltnp "sport = :$APORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
web_up() { [ -n "$(web_pid)" ]; }
web_down() { [ -z "$(web_pid)" ]; }
# web_start: I8's tiny HTTP server on $APORT in rs1, except that it reads
# the request up to its blank line before answering (closing a socket
# with unread data sends a reset, which a real client may report before
# the answer), and says how long its body is.
web_start() {
  ip netns exec rs1 perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 64, ReuseAddr => 1) or die "listen: $!";
    while (my $c = $s->accept) {
      while (my $l = <$c>) { last if $l =~ /^\r?$/ }
      print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nrs1-a1\n";
      close $c;
    }
  ' $APORT >/dev/null 2>&1 &
  wait_for 15 "web server listening on port $APORT in rs1" web_up && WPID=$(web_pid)
  log "  web server pid ${WPID:-none}"
}
# web_stop: SIGTERM to that one process, nothing else.
web_stop() {
  [ -n "${WPID:-}" ] || return 0
  kill "$WPID" 2>/dev/null
  wait "$WPID" 2>/dev/null
  wait_for 15 "web server pid $WPID gone, nothing on port $APORT in rs1" web_down
  WPID=
}
WPID=
# a_watch_same: web, web-wlc and web-sed as before A1, or the difference.
a_watch_same() {
  [ "$(a_watch)" = "$A_BEFORE" ] && pass_note "web, web-wlc and web-sed unchanged (ipvsadm -Sn)" ||
    { fail "web, web-wlc or web-sed changed"; diff <(echo "$A_BEFORE") <(a_watch) | sed 's/^/    /' >>"$REPORT"; }
}

# ---------------------------------------------------------------------------
scenario_start A1 "issue 19 under the unit's sandbox: feedbackd-agent@$AINST (packaged template, DynamicUser, no capabilities, exposure <= 1.5) in rs1's namespace with an http monitor on a real web server there (url http://127.0.0.1:$APORT/) and agent-check-listen = :$ACPORT: ipvsadm -Ln has $RS1:$APORT at 100 under web-agent ($AVIP:$APORT); the web server killed: weight 0, agent-check 'ready 0%'; restarted: 100 again; '$ASVC drain' in the admin file: weight 0 while the same agent session stays connected, agent-check 'drain 100% #...', the agent's journal has the change with SERVICE, ADMIN, OLD_ADMIN, HEALTH; '$ASVC ready': 100 again"
wait_for 60 "master status: 3 agents" agents_are 3
A_BEFORE=$(a_watch)
# A comparison with nothing would hold whatever happened.
[ "$(echo "$A_BEFORE" | grep -c -- ' -r ')" -ge 9 ] && pass_note "web, web-wlc and web-sed have $(echo "$A_BEFORE" | grep -c -- ' -r ') destinations to watch" ||
  fail "web, web-wlc and web-sed have $(echo "$A_BEFORE" | grep -c -- ' -r ') destinations, want rs1-rs3 under each (9)"
A_MCONF0=/tmp/master.conf.a0
cp $MCONF $A_MCONF0
ipvs_evidence "before"
if [ -e $AADMIN ]; then
  fail "$AADMIN exists before the scenario: $(head -3 $AADMIN | paste -sd'|')"
fi
# The web server, and the virtual service for its port.
web_start
wait_for 15 "an HTTP answer from it inside rs1 (http://127.0.0.1:$APORT/)" \
  ip netns exec rs1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$APORT && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && grep -q '^rs1-a1\$' <&3"
cat >>$MCONF <<CONF

[virtual-service]
name = web-agent
address = $AVIP
protocol = tcp
port = $APORT
scheduler = wrr
CONF
reload_ok "web-agent added"
wait_for 30 "virtual service tcp $AVIP:$APORT in the kernel, no destination yet" \
  sh -c "ipvsadm -Ln -t $AVIP:$APORT >/dev/null 2>&1 && ! ipvsadm -Ln -t $AVIP:$APORT | grep -q -- '->.*:$APORT '"
# The instance: its drop-in first (outside rs1's namespace it would
# register the director's own address), then its file, which makes
# feedbackd-agent-sync start it.
mkdir -p "/etc/systemd/system/$AU.d"
printf '[Service]\nNetworkNamespacePath=/run/netns/rs1\n' >"/etc/systemd/system/$AU.d/netns.conf"
systemctl daemon-reload
cat >"$AD/$AINST.conf" <<CONF
# e2e A1: issue 19's monitors, agent-check and local maintenance
admin-file = $AADMIN

[service]
name = $ASVC
protocol = tcp
port = $APORT
forwarding = DR
monitor = http
url = http://127.0.0.1:$APORT/
timeout = 1
agent-check-listen = :$ACPORT
CONF
chmod 644 "$AD/$AINST.conf"
out=$(feedbackd-agent --instance=$AINST -t 2>&1) && pass_note "feedbackd-agent --instance=$AINST -t accepts agent.conf with agent.d/$AINST.conf" ||
  fail "feedbackd-agent --instance=$AINST -t: $out"
evidence "agent.d/$AINST.conf" cat "$AD/$AINST.conf"
t0=$(ms)
wait_for 60 "$AU active (started by feedbackd-agent-sync)" is_active "$AU" &&
  log "  active $(secs_since "$t0") s after its file was written"
# The sandbox it runs in: the packaged unit's, with the two drop-ins
# (netns here, the secret's LoadCredential= from I13).
apid=$(mainpid "$AU")
auid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' /proc/"$apid"/status 2>/dev/null)
acap=$(awk '/^CapEff:/ { print $2 }' /proc/"$apid"/status 2>/dev/null)
case $auid in
  "" | 0\ * | *\ 0\ * | *\ 0) fail "$AU (pid $apid) Uid '$auid'" ;;
  *) pass_note "$AU (pid $apid) runs as a transient non-root user: Uid $auid" ;;
esac
[ "$acap" = 0000000000000000 ] && pass_note "$AU has no capabilities (CapEff $acap)" || fail "$AU CapEff '$acap', want none"
[ "$(readlink /proc/"$apid"/ns/net)" = "$(ip netns exec rs1 readlink /proc/self/ns/net)" ] &&
  pass_note "$AU runs in network namespace rs1 (its drop-in)" || fail "$AU is not in namespace rs1"
[ "$(prop "$AU" DynamicUser)" = yes ] && pass_note "DynamicUser=yes" || fail "DynamicUser=$(prop "$AU" DynamicUser)"
evidence "$AU drop-ins" systemctl show -p DropInPaths --value "$AU"
systemd-analyze security --no-pager "$AU" >/tmp/a1-security.txt 2>&1
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p' /tmp/a1-security.txt | tail -1)
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 1.5) }'; then
  pass_note "systemd-analyze security $AU (the running instance, drop-ins included): exposure $score, within the agent's bar 1.5"
else
  fail "systemd-analyze security $AU: exposure '${score:-no figure}', the agent's bar is 1.5"
  evidence "systemd-analyze security $AU (items it loses points on)" sh -c "grep '✗' /tmp/a1-security.txt || cat /tmp/a1-security.txt"
fi
evidence "systemd-analyze security $AU (overall)" grep 'Overall exposure' /tmp/a1-security.txt
# The http monitor's health 100 is the weight (max-weight 100).
wait_for 60 "ipvsadm: $RS1:$APORT Route 100 under $AVIP:$APORT (http monitor: 200 OK)" a_is 100 &&
  log "  $(secs_since "$t0") s after its file was written"
wait_for 10 "agent journal: service $ASVC accepted by the master" jmore 0 'service accepted by master' -u "$AU" SERVICE=$ASVC
wait_for 10 "agent journal: answering HAProxy agent-check, SERVICE=$ASVC" jmore 0 'answering HAProxy agent-check' -u "$AU" SERVICE=$ASVC
ac_answer '^ready 100%$' "web server up"
A_SESSION=$(a_session)
A_N=$(nagents)
log "  the agent's session (feedbackctl agents: peer, since, health): $A_SESSION; master status: $A_N agents"
[ "${A_SESSION##* }" = 100 ] && pass_note "feedbackctl agents $RS1: the session offering tcp/$APORT reports health 100" ||
  fail "feedbackctl agents $RS1: the session offering tcp/$APORT is '$A_SESSION'"
evidence "feedbackd-agent --instance=$AINST -m in rs1 (root, outside the sandbox)" timeout 30 ip netns exec rs1 feedbackd-agent --instance=$AINST -m
ipvs_evidence "web server up"
# The web server goes away: its one process, killed by its PID.
f0=$(jn 'http check failed; health 0' -u "$AU")
t0=$(ms)
log "  killing the web server, pid $WPID"
web_stop
wait_for 15 "ipvsadm: $RS1:$APORT Route 0 (the http check fails)" a_is 0 &&
  log "  weight 0 $(secs_since "$t0") s after the kill"
wait_for 10 "agent journal: 'http check failed; health 0'" jmore "$f0" 'http check failed; health 0' -u "$AU"
ac_answer '^ready 0%$' "web server down"
a_watch_same
ipvs_evidence "web server down"
t0=$(ms)
web_start
wait_for 30 "ipvsadm: $RS1:$APORT Route 100 again (slow start 2 s)" a_is 100 &&
  log "  weight 100 $(secs_since "$t0") s after the web server was started again"
ac_answer '^ready 100%$' "web server up again"
# A local drain, from the realserver's admin file.
A_SESSION=$(a_session)
d0=$(jn 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=drain OLD_ADMIN=ready HEALTH=100 ADMIN_FILE=$AADMIN)
t0=$(ms)
echo "$ASVC drain" >$AADMIN
chmod 644 $AADMIN
wait_for 15 "ipvsadm: $RS1:$APORT Route 0 ('$ASVC drain' in $AADMIN)" a_is 0 &&
  log "  weight 0 $(secs_since "$t0") s after the admin file was written"
wait_for 10 "agent journal: 'admin state changed by the admin file' SERVICE=$ASVC ADMIN=drain OLD_ADMIN=ready HEALTH=100 ADMIN_FILE=$AADMIN" \
  jmore "$d0" 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=drain OLD_ADMIN=ready HEALTH=100 ADMIN_FILE=$AADMIN
evidence "that journal entry's fields" sh -c "journalctl -q --no-pager -o verbose -u $AU ADMIN=drain -n 1 | grep -E '^ *(MESSAGE|SERVICE|ADMIN|OLD_ADMIN|HEALTH|ADMIN_FILE|PRIORITY)='"
ac_answer '^drain 100% #.+$' "drained by the admin file (health still measured: 100)"
A_DRAINED="${A_SESSION% *} 0"
drained_connected() { a_is 0 && a_session_is "$A_DRAINED" && [ "$(nagents)" = "$A_N" ]; }
stays_for 3 "drained and connected: $RS1:$APORT at 0, the same session ($(echo "$A_SESSION" | cut -d' ' -f1-2)) reporting health 0, master status $A_N agents (3 s of samples)" drained_connected
a_watch_same
evidence "feedbackctl agents $RS1 (drained)" "$CTL" agents $RS1
ipvs_evidence "drained by the admin file"
r0=$(jn 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=ready OLD_ADMIN=drain)
t0=$(ms)
echo "$ASVC ready" >$AADMIN
wait_for 30 "ipvsadm: $RS1:$APORT Route 100 again ('$ASVC ready')" a_is 100 &&
  log "  weight 100 $(secs_since "$t0") s after the admin file said ready"
wait_for 10 "agent journal: ADMIN=ready OLD_ADMIN=drain" jmore "$r0" 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=ready OLD_ADMIN=drain
ac_answer '^ready 100%$' "ready again"
a_session_is "${A_SESSION% *} 100" && pass_note "the same agent session throughout the drain and back (peer, since)" ||
  fail "the agent session changed: '$A_SESSION' before the drain, '$(a_session)' after"
evidence "the agent's journal" journalctl -q --no-pager -u "$AU" -n 25
ipvs_evidence "after"
end

# ---------------------------------------------------------------------------
scenario_start A2 "local maintenance survives an agent restart: '* maint' in the admin file gives $RS1:$APORT weight 0 and agent-check 'maint 100% #...'; systemctl restart $AU: ipvsadm -Ln (sampled) never shows it above 0, the new process logs ADMIN=maint at its start and its session reports 0; the file removed: 100 and 'ready 100%' again; then A1's instance, web server, virtual service and admin file are removed and the table is as before A1"
wait_for 30 "ipvsadm: $RS1:$APORT Route 100" a_is 100
m0=$(jn 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=maint)
t0=$(ms)
echo '* maint' >$AADMIN
chmod 644 $AADMIN
wait_for 15 "ipvsadm: $RS1:$APORT Route 0 ('* maint' in $AADMIN)" a_is 0 &&
  log "  weight 0 $(secs_since "$t0") s after the admin file was written"
wait_for 10 "agent journal: ADMIN=maint for $ASVC" jmore "$m0" 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=maint
ac_answer '^maint 100% #.+$' "maintenance by the admin file"
A_SESSION=$(a_session)
inv0=$(prop "$AU" InvocationID)
# Through the restart the destination may go (STOP, then removal-interval
# 3 s with no connections) and come back at weight 0; it may never have
# a weight.
sample_start /tmp/a2.samples a_dest
t0=$(ms)
out=$(systemctl restart "$AU" 2>&1) || fail "systemctl restart $AU: $out"
wait_for 60 "a new $AU process, active" sh -c "[ \"\$(systemctl show -p InvocationID --value $AU)\" != '$inv0' ] && systemctl -q is-active $AU"
inv1=$(prop "$AU" InvocationID)
new_session_0() { local s; s=$(a_session); [ -n "$s" ] && [ "${s% *}" != "${A_SESSION% *}" ] && [ "${s##* }" = 0 ]; }
wait_for 60 "feedbackctl agents: a new session offering tcp/$APORT, health 0" new_session_0 &&
  log "  $(secs_since "$t0") s after systemctl restart: $(a_session)"
wait_for 30 "ipvsadm: $RS1:$APORT Route 0 under the new session" a_is 0
stays_for 2 "still 0 (2 s of samples)" a_is 0
sample_stop
n=$(wc -l </tmp/a2.samples)
bad=$(awk '{ v = $0; sub(/^[0-9]+ ?/, "", v) } v != "" && v != "Route 0" { c++ } END { print c + 0 }' /tmp/a2.samples)
gone=$(awk '{ v = $0; sub(/^[0-9]+ ?/, "", v) } v == "" { c++ } END { print c + 0 }' /tmp/a2.samples)
if [ "$n" -ge 2 ] && [ "$bad" = 0 ]; then
  pass_note "ipvsadm: $RS1:$APORT never above weight 0 through the restart ($n samples, $gone without the destination)"
else
  fail "$bad of $n samples had $RS1:$APORT above weight 0 through the restart"
  evidence "those samples (epoch ms, value)" sh -c "awk '{ v = \$0; sub(/^[0-9]+ ?/, \"\", v) } v != \"\" && v != \"Route 0\"' /tmp/a2.samples | head -5"
fi
[ "$(jn 'admin state changed by the admin file' -u "$AU" _SYSTEMD_INVOCATION_ID="$inv1" SERVICE=$ASVC ADMIN=maint)" -ge 1 ] &&
  pass_note "the new process's journal (_SYSTEMD_INVOCATION_ID=$inv1): ADMIN=maint, read from the file at its start" ||
  fail "no ADMIN=maint line from the new process (_SYSTEMD_INVOCATION_ID=$inv1)"
ac_answer '^maint 100% #.+$' "maintenance after the restart"
ipvs_evidence "maintenance after the restart"
r0=$(jn 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=ready OLD_ADMIN=maint)
t0=$(ms)
rm $AADMIN
wait_for 30 "ipvsadm: $RS1:$APORT Route 100 again (admin file removed)" a_is 100 &&
  log "  weight 100 $(secs_since "$t0") s after the admin file was removed"
wait_for 10 "agent journal: ADMIN=ready OLD_ADMIN=maint" jmore "$r0" 'admin state changed by the admin file' -u "$AU" SERVICE=$ASVC ADMIN=ready OLD_ADMIN=maint
ac_answer '^ready 100%$' "admin file removed"
evidence "agent-check answers read from the director in A1 and A2" printf '%s\n' "${AC_SEEN[@]}"
evidence "the agent's journal, admin changes" journalctl -q --no-pager -u "$AU" 'MESSAGE=admin state changed by the admin file'
# Clean-up: back to the table before A1.
rm -f $AADMIN
t0=$(ms)
rm -f "$AD/$AINST.conf"
wait_for 60 "$AU stopped (file removed)" is_inactive "$AU"
wait_for 30 "$RS1:$APORT deleted from $AVIP:$APORT (STOP, then removal-interval)" a_gone &&
  log "  $(secs_since "$t0") s after its file was removed"
web_stop
cp $A_MCONF0 $MCONF
reload_ok "without web-agent"
# The master never deletes a virtual service, even one it no longer has
# in its configuration: this one is the scenario's own.
ipvsadm -D -t $AVIP:$APORT 2>>"$REPORT" || fail "ipvsadm -D -t $AVIP:$APORT"
rm -rf "/etc/systemd/system/$AU.d"
systemctl daemon-reload
a_clean() { [ "$(a_watch)" = "$A_BEFORE" ] && ! ipvsadm -Sn | grep -qF -- "$AVIP:"; }
wait_for 30 "web, web-wlc and web-sed as before A1, nothing left of $AVIP (ipvsadm -Sn)" a_clean ||
  diff <(echo "$A_BEFORE") <(a_watch) | sed 's/^/    /' >>"$REPORT"
wait_for 30 "master status: 3 agents" agents_are 3
ipvs_evidence "after"
end
