# Helpers for the guest scenarios: every wait has a deadline, every check
# records its evidence in the report.
REPORT=/mnt/out/report.txt
RESULTS=/mnt/out/results.txt
: >"$REPORT"
: >"$RESULTS"
SCEN_TIMES=() # "NAME SECONDS" of each scenario ended

log() { printf '%s\n' "$*" >>"$REPORT"; }

# evidence TITLE CMD...: the command's output, indented, in the report.
evidence() {
  local title=$1; shift
  log "  --- $title: \$ $*"
  "$@" 2>&1 | sed 's/^/    /' >>"$REPORT" || true
}

scenario_start() { SCEN=$1; SCEN_OK=1; SCEN_T0=${EPOCHREALTIME/./}; log ""; log "=== $SCEN: $2"; }
# scenario_secs: seconds since the scenario started, one decimal.
scenario_secs() { local t=${EPOCHREALTIME/./}; echo $(( (t - SCEN_T0) / 1000000 )).$(( (t - SCEN_T0) / 100000 % 10 )); }
fail() { SCEN_OK=0; log "  FAIL: $*"; }
pass_note() { log "  ok: $*"; }
scenario_end() {
  local d
  d=$(scenario_secs)
  if [ "$SCEN_OK" = 1 ]; then echo "PASS $SCEN" >>"$RESULTS"; log "  => PASS ($d s)"
  else echo "FAIL $SCEN" >>"$RESULTS"; log "  => FAIL ($d s)"; fi
  SCEN_TIMES+=("$SCEN $d")
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then fail "timed out after ${secs}s waiting for: $what"; return 1; fi
    sleep 0.2
  done
  pass_note "$what"
}

is_active() { [ "$(systemctl show -p ActiveState --value "$1")" = active ]; }
is_inactive() { case "$(systemctl show -p ActiveState --value "$1")" in inactive|failed) return 0;; esac; return 1; }
prop() { systemctl show -p "$2" --value "$1"; }
mainpid() { prop "$1" MainPID; }
journal_has() { journalctl -q -u "$1" --no-pager | grep -q -- "$2"; }
