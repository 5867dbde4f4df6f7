# gnuplot script of the load-balancing experiment, run by run.sh in the
# results directory once per scenario with
#   -e "scen='hog'; arms='static direct ...'; hog=60; hogstop=-1; dur=150"
# (hogstop -1: the hog runs to the end). Writes latency-SCEN.png, one
# column per arm in the order given. Rows: every request's latency (log
# scale, coloured by the realserver that answered; black: failed, at the
# time it failed) with the p95 of each 5 s window; each realserver
# slice's CPU use; the IPVS weights.
n = words(arms)
set terminal pngcairo size (60 + 640 * n),1150 font "DejaVu Sans,11"
set output "latency-".scen.".png"
set multiplot layout 3,n margins 0.04,0.995,0.06,0.93 spacing 0.03,0.07 \
  title "LVS-DR, 3 realservers (CPUQuota each), open-loop load, scenario \"".scen."\": CPU hog in rs3's slice ". \
  (hogstop < 0 ? "from the dashed line on" : "between the dashed lines") font ",14"
set grid
set xrange [0:dur]
set key top left opaque box
set arrow 1 from hog, graph 0 to hog, graph 1 nohead dashtype 2 lw 2 lc rgb "black"
if (hogstop >= 0) {
  set arrow 2 from hogstop, graph 0 to hogstop, graph 1 nohead dashtype 2 lw 2 lc rgb "black"
}
rs(i) = (i == 1 ? "#1f77b4" : i == 2 ? "#2ca02c" : i == 3 ? "#d62728" : "#000000")
title(a) = (a eq "static" ? "static: equal wrr weights" : \
  a eq "direct" ? "feedbackd, weight-law = direct (as it was)" : \
  a eq "smoothed-5s" ? "feedbackd, smoothed 5 s, slow-start 10 s" : \
  a eq "smoothed-10s" ? "feedbackd, smoothed 10 s, slow-start 10 s" : \
  a eq "keepalived" ? "keepalived, MISC\\_CHECK misc\\_dynamic" : a)

set logscale y
set yrange [1:20000]
set ylabel "latency (ms)"
do for [a in arms] {
  f = scen."-".a
  set title title(a)
  plot f.".lat.dat" using 1:(column(3) == 1 ? $2 : 1/0) with points pt 7 ps 0.15 lc rgb rs(1) notitle, \
       ""            using 1:(column(3) == 2 ? $2 : 1/0) with points pt 7 ps 0.15 lc rgb rs(2) notitle, \
       ""            using 1:(column(3) == 3 ? $2 : 1/0) with points pt 7 ps 0.15 lc rgb rs(3) notitle, \
       ""            using 1:(column(3) == 0 ? $2 : 1/0) with points pt 7 ps 0.3 lc rgb rs(0) notitle, \
       NaN with points pt 7 lc rgb rs(1) title "rs1", NaN with points pt 7 lc rgb rs(2) title "rs2", \
       NaN with points pt 7 lc rgb rs(3) title "rs3", \
       f.".win.dat" using 1:3 with linespoints lw 2 pt 5 ps 0.5 lc rgb "#ff7f0e" title "p95 (5 s)"
}
unset logscale y
set yrange [0:*]
set ylabel "CPU (% of one CPU)"
do for [a in arms] {
  f = scen."-".a
  set title "CPU use of each realserver's slice"
  plot for [i=1:3] f.".cpu.dat" using 1:(column(4+i)) with lines lw 1.5 lc rgb rs(i) title "rs".i
}
set yrange [0:105]
set ylabel "IPVS weight"
set xlabel "time since the load started (s)"
do for [a in arms] {
  f = scen."-".a
  set title (a eq "static" ? "IPVS weights (all 1)" : "IPVS weights (/proc/net/ip\\_vs, every 0.5 s)")
  if (a eq "static") { set yrange [0:1.1] } else { set yrange [0:105] }
  plot for [i=1:3] f.".cpu.dat" using 1:(column(1+i)) with steps lw 2 lc rgb rs(i) title "rs".i
}
unset multiplot
