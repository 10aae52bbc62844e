# coin's exact Wilcoxon signed-rank test on the data of benchmarks/bench_wilcoxon.py, for the
# side-by-side timing printed there (measured once; the numbers are committed in that script).
#
#   Rscript benchmarks/r/bench_wilcoxon_coin.R
#
# Data (no random numbers, identical in Python): d_i = (37 i mod 23) - 10, i = 1..n: integers
# -10..12 with ties and zeros, a mild shift.
suppressMessages(library(coin))
cat(R.version.string, "coin", as.character(packageVersion("coin")), "\n")
for (n in c(20, 50, 100, 200, 500)) {
  i <- 1:n
  d <- (37 * i) %% 23 - 10
  z <- rep(0, n)
  reps <- if (n <= 100) 50 else if (n <= 200) 10 else 3
  p <- NA
  tm <- system.time(for (k in 1:reps) {
    p <- pvalue(wilcoxsign_test(d ~ z, zero.method = "Wilcoxon", distribution = "exact"))
  })
  cpu <- (tm[["user.self"]] + tm[["sys.self"]]) / reps  # CPU time: the machine is shared
  cat(sprintf("n = %4d  zeros = %2d  coin exact p = %.17g  %.1f ms CPU per test\n", n,
              sum(d == 0), p, 1000 * cpu))
}
