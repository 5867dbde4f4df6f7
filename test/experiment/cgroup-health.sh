#!/bin/sh
# cgroup-health.sh CGROUP STATEFILE: the keepalived arm's MISC_CHECK
# script (misc_dynamic). It prints nothing and exits with 2 + weight, so
# that keepalived sets the realserver's weight to the cgroup's CPU health:
#
#	health = 100 × (1 − Δusage_usec / (Δtime × allowed CPUs))
#
# the same reading feedbackd-agent's "monitor = cpuload" with
# "cgroup = CGROUP" reports (internal/monitor/cgroupcpu.go): usage_usec
# from the cgroup's cpu.stat; the allowed CPUs the tightest cpu.max from
# the cgroup up to the top of the hierarchy, and no more than the CPUs in
# its cpuset.cpus.effective or online; rounded to the nearest integer,
# clamped to 1..100 (a saturated cgroup is busy, not out of service: the
# agent's floor of 1). The weight is health × max-weight / 100 with the
# experiment's max-weight of 100, i.e. the health itself.
#
# Over the same interval as the agent: each run measures from the
# previous run's reading, kept in STATEFILE, so with delay_loop = 2 the
# interval is the 2 s between checks, as the agent's interval = 2 is the
# time between its samples. The first run has no previous reading and,
# like the agent's first sample, reads twice 0.1 s apart.
#
# A cgroup that cannot be read fails the check (exit 1): keepalived then
# takes the realserver out, which is what a failed check is for.
#
# POSIX sh (dash) and its builtins only, apart from the first run's sleep:
# keepalived forks this every 2 s for each realserver, and on the
# emulated machine of the experiment a bash start costs far more. The
# clock is /proc/uptime (10 ms steps: at most half a health point over
# 2 s), as dash has no finer one without a fork.
#
# CGROUP_ROOT and PROC_ROOT (default /sys/fs/cgroup and /proc) are for
# cgrouphealth_test.go, which runs it on a made-up tree.
[ $# = 2 ] || exit 1
rel=/${1#/}
rel=${rel%/}
root=${CGROUP_ROOT:-/sys/fs/cgroup}
proc=${PROC_ROOT:-/proc}
state=$2

# sample: the cgroup's usage_usec into u, the time in µs into t.
sample() {
  u=
  while read -r k v; do
    if [ "$k" = usage_usec ]; then u=$v; break; fi
  done 2>/dev/null <"$root$rel/cpu.stat" || return 1
  read -r up _ 2>/dev/null <"$proc/uptime" || return 1
  # "12345.67" → µs, without a fork; "08" would be octal to $(( )).
  f=${up#*.}
  t=$((${up%.*} * 1000000 + ${f#0} * 10000))
  [ -n "$u" ]
}

# allowed: the CPUs' worth the cgroup may use, as the fraction aq/ap.
allowed() {
  n=0
  if read -r cpus 2>/dev/null <"$root$rel/cpuset.cpus.effective" && [ -n "$cpus" ]; then
    rest=$cpus
    while [ -n "$rest" ]; do
      r=${rest%%,*}
      case $rest in *,*) rest=${rest#*,} ;; *) rest= ;; esac
      case $r in
      *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;;
      *) n=$((n + 1)) ;;
      esac
    done
  fi
  if [ "$n" = 0 ]; then
    while read -r l _; do
      case $l in cpu[0-9]*) n=$((n + 1)) ;; esac
    done <"$proc/stat"
  fi
  aq=$n ap=1
  p=$rel
  while [ -n "$p" ] && [ "$p" != / ]; do
    if read -r q per 2>/dev/null <"$root$p/cpu.max" && [ "$q" != max ]; then
      per=${per:-100000}
      # q/per < aq/ap ?
      if [ $((q * ap)) -lt $((aq * per)) ]; then aq=$q ap=$per; fi
    fi
    p=${p%/*}
  done
  [ "$aq" -gt 0 ]
}

sample || exit 1
if read -r pu pt _ 2>/dev/null <"$state" && [ -n "${pt:-}" ] && [ "$u" -ge "$pu" ]; then
  :
else
  pu=$u pt=$t
  sleep 0.1
  sample || exit 1
fi
allowed || exit 1
dt=$((t - pt))
used=$((u - pu))
printf '%s %s\n' "$u" "$t" >"$state" || exit 1
[ "$dt" -gt 0 ] || exit 0 # no time elapsed: weight unchanged (exit 0)
# 100 × used / (dt × aq/ap), rounded to the nearest integer.
num=$((100 * used * ap))
den=$((dt * aq))
h=$((100 - (2 * num + den) / (2 * den)))
[ $h -ge 1 ] || h=1
[ $h -le 100 ] || h=100
echo "$t $h" >>"$state.log"
exit $((2 + h))
