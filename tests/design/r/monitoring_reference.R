# Reference numbers for tests/design/test_monitoring.py (R >= 4, base R only).
# Run: Rscript tests/design/r/monitoring_reference.R
# Independent of hepatrial: posterior by pbeta(); boundaries by search; operating
# characteristics by brute-force enumeration of all 2^n outcome sequences.
options(digits = 15)
post <- function(x, n, theta, a, b) pbeta(theta, a + x, b + n - x, lower.tail = FALSE)

cat("# posterior P(p > theta | x, n)\n")
for (args in list(c(0, 1, 0.2, 0.2, 1.8), c(1, 1, 0.2, 0.2, 1.8), c(2, 3, 0.2, 0.2, 1.8),
                  c(3, 8, 0.2, 0.2, 1.8), c(4, 8, 0.2, 0.2, 1.8), c(2, 2, 0.3, 1, 1),
                  c(5, 20, 0.15, 0.5, 0.5))) {
  cat(sprintf("x=%d n=%d theta=%g a=%g b=%g: %.15g\n", args[1], args[2], args[3], args[4],
              args[5], post(args[1], args[2], args[3], args[4], args[5])))
}

boundary <- function(theta, cc, a, b, nmax) {
  sapply(1:nmax, function(n) { x <- which(post(0:n, n, theta, a, b) > cc); if (length(x)) x[1] - 1 else n + 1 })
}
bd <- boundary(0.2, 0.8, 0.2, 1.8, 8)
cat("# boundary theta=0.2 c=0.8 Beta(0.2,1.8) n=1..8:", bd, "\n")
cat("# boundary theta=0.3 c=0.9 Beta(1,1) n=1..10:", boundary(0.3, 0.9, 1, 1, 10), "\n")

oc <- function(bd, p, nmax) {
  pstop <- 0; en <- 0
  for (k in 0:(2^nmax - 1)) {
    y <- as.integer(intToBits(k))[1:nmax]
    pr <- prod(ifelse(y == 1, p, 1 - p))
    cs <- cumsum(y); s <- which(cs >= bd[1:nmax])
    if (length(s)) { pstop <- pstop + pr; en <- en + pr * s[1] } else en <- en + pr * nmax
  }
  c(pstop, en)
}
cat("# OC of the Bayesian rule (theta=0.2, c=0.8, Beta(0.2,1.8), n_max=8): p, P(stop), E[N]\n")
for (p in c(0.05, 0.1, 0.2, 0.3, 0.4, 0.5)) {
  r <- oc(bd, p, 8); cat(sprintf("%g %.15g %.15g\n", p, r[1], r[2]))
}
# first event OR Bayesian, same event type: the first event stops
cat("# set: first event + Bayesian, p=0.1: ", oc(pmin(bd, 1), 0.1, 8), "\n")
# two event types: first-event rule on A (rate q) + at least 2 of the first 4 on B (rate r)
two <- function(q, r, nmax) {
  pstop <- 0; en <- 0
  for (k in 0:(4^nmax - 1)) {
    d <- k; ya <- integer(nmax); yb <- integer(nmax)
    for (i in 1:nmax) { ya[i] <- d %% 2; d <- d %/% 2; yb[i] <- d %% 2; d <- d %/% 2 }
    pr <- prod(ifelse(ya == 1, q, 1 - q)) * prod(ifelse(yb == 1, r, 1 - r))
    ca <- cumsum(ya); cb <- cumsum(yb * (1:nmax <= 4))
    s <- which(ca >= 1 | cb >= 2)
    if (length(s)) { pstop <- pstop + pr; en <- en + pr * s[1] } else en <- en + pr * nmax
  }
  c(pstop, en)
}
cat("# set: first-event on A (0.05) + 2-of-first-4 on B (0.2), n_max=6: ", two(0.05, 0.2, 6), "\n")
