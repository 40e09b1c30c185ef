set terminal pngcairo size 900,600 noenhanced
set output 'samples/accuracy/accuracy-gowalla-20epochs.png'
set title 'gowalla: Recall@20 against size (20 epochs, 3 seed(s), mean +- sd)'
set logscale x
set xtics (4, 10, 30, 100)
set xrange [3:130]
set xlabel 'times smaller than the dense D = 64 tables (parameter budget)'
set ylabel 'Recall@20'
set key outside right
set grid
names = 'dense int8 int4 int8-sym int4-sym hash qr qr-ordered fpd-ordered fpd-free '
colors = '#8c564b #2ca02c #17becf #7f7f7f #000080 #bcbd22 #e377c2 #1f77b4 #9467bd #d62728 '
plot for [i=0:9] 'samples/accuracy/accuracy-gowalla-20epochs.png.dat' index i using 1:2:3 with yerrorlines lw 2 lc rgb word(colors, i+1) pt i+1 title word(names, i+1), 0.12360 with lines dt 2 lc rgb 'black' title 'dense D = 64', 0.04160 with lines dt 3 lc rgb 'gray40' title 'most popular items'
