# gnuplot script of the load-balancing experiment, run by run.sh in the
# results directory with -e "hog=SECONDS; dur=SECONDS; maxstep='N'":
# latency.png, one column per run: static equal weights, feedbackd with
# the master's defaults, feedbackd with weight-max-step. Rows: every
# request's latency (log scale, coloured by the realserver that answered; black:
# failed, at the time it failed) with the p95 of each 5 s window; each
# realserver slice's CPU use; the IPVS weights.
set terminal pngcairo size 2100,1150 font "DejaVu Sans,11"
set output "latency.png"
set multiplot layout 3,3 margins 0.05,0.99,0.06,0.94 spacing 0.045,0.07 \
  title "LVS-DR, 3 realservers (CPUQuota each), open-loop load; CPU hog in rs3's slice from the dashed line" font ",14"
set grid
set xrange [0:dur]
set key top left opaque box
set arrow 1 from hog, graph 0 to hog, graph 1 nohead dashtype 2 lw 2 lc rgb "black"
rs(i) = (i == 1 ? "#1f77b4" : i == 2 ? "#2ca02c" : i == 3 ? "#d62728" : "#000000")

set logscale y
set yrange [1:20000]
set ylabel "latency (ms)"
runs = "static feedback feedback-damped"
do for [run in runs] {
  set title (run eq "static" ? "static: equal wrr weights, no feedbackd" : \
    run eq "feedback" ? "feedbackd: cpuload per slice, master defaults" : \
    "feedbackd damped: the same with weight-max-step = ".maxstep." %")
  plot run.".lat.dat" using 1:(column(3) == 1 ? $2 : 1/0) with dots lc rgb rs(1) notitle, \
       ""            using 1:(column(3) == 2 ? $2 : 1/0) with dots lc rgb rs(2) notitle, \
       ""            using 1:(column(3) == 3 ? $2 : 1/0) with dots lc rgb rs(3) notitle, \
       ""            using 1:(column(3) == 0 ? $2 : 1/0) with points pt 7 ps 0.3 lc rgb rs(0) notitle, \
       NaN with points pt 7 lc rgb rs(1) title "rs1", NaN with points pt 7 lc rgb rs(2) title "rs2", \
       NaN with points pt 7 lc rgb rs(3) title "rs3", \
       run.".win.dat" using 1:3 with linespoints lw 2 pt 5 ps 0.5 lc rgb "#ff7f0e" title "p95 (5 s windows)"
}
unset logscale y
set yrange [0:*]
set ylabel "CPU (% of one CPU)"
do for [run in runs] {
  set title "CPU use of each realserver's slice (server + hog)"
  plot for [i=1:3] run.".cpu.dat" using 1:(column(4+i)) with lines lw 1.5 lc rgb rs(i) title "rs".i
}
set ylabel "IPVS weight"
set xlabel "time since the load started (s)"
do for [run in runs] {
  set title "IPVS weights (ipvsadm -Ln, every 0.5 s)"
  plot for [i=1:3] run.".cpu.dat" using 1:(column(1+i)) with steps lw 2 lc rgb rs(i) title "rs".i
}
unset multiplot
