# Reference numbers for hepatrial.analysis.wilcoxon (exact Wilcoxon signed-rank with ties and
# zeros, digits.rank, Hodges-Lehmann estimate and CI), from R's wilcox.test and
# coin::wilcoxsign_test on datasets R ships (datasets, MASS) and two small literal examples.
#
# Run from the repository root (Debian: apt-get install -y r-base-core r-cran-coin r-cran-mass):
#   Rscript tests/analysis/r/wilcoxon_reference.R
# Writes tests/data/analysis/wilcoxon_data.csv (the pairs, 17 significant digits; d = y - x),
# tests/data/analysis/wilcoxon_reference.csv (case, digits_rank, quantity, value),
# tests/data/analysis/wilcoxon_signif.csv (R's signif) and wilcoxon_signrank.csv (psignrank,
# qsignrank).
# The tests read only those files; R is not needed to run them.

suppressMessages({
  library(coin)
  library(MASS)
})

out_dir <- file.path("tests", "data", "analysis")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

cases <- list()
add <- function(name, x, y) {
  ok <- !is.na(x) & !is.na(y)
  cases[[name]] <<- list(x = as.numeric(x[ok]), y = as.numeric(y[ok]))
}

# --- datasets R ships --------------------------------------------------------------------------
add("sleep", sleep$extra[sleep$group == 1], sleep$extra[sleep$group == 2])
add("shoes", shoes$A, shoes$B)
for (tr in c("Cont", "CBT", "FT")) {
  a <- anorexia[anorexia$Treat == tr, ]
  add(paste0("anorexia_", tolower(tr)), a$Prewt, a$Postwt)
}
add("anorexia_all", anorexia$Prewt, anorexia$Postwt)
cw <- reshape(ChickWeight[, c("weight", "Time", "Chick")], idvar = "Chick", timevar = "Time",
              direction = "wide")
cw$Diet <- ChickWeight$Diet[match(cw$Chick, ChickWeight$Chick)]
w <- function(t) cw[[paste0("weight.", t)]]
for (t in c(2, 4, 8, 12, 21)) add(paste0("chickweight_0_", t), w(0), w(t))
add("chickweight_2_4", w(2), w(4))
add("chickweight_18_20", w(18), w(20))
add("chickweight_20_21", w(20), w(21))
for (dt in 1:4) add(paste0("chickweight_diet", dt, "_0_21"), w(0)[cw$Diet == dt],
                    w(21)[cw$Diet == dt])
add("attitude_rating_complaints", attitude$rating, attitude$complaints)
add("attitude_privileges_learning", attitude$privileges, attitude$learning)
add("immer", immer$Y1, immer$Y2)
add("stackloss", stackloss$Water.Temp * 2.5, stackloss$Air.Flow)
add("women", women$weight / 2, women$height)
add("usarrests_murder", USArrests$Rape / 2, USArrests$Murder)
add("usarrests_urbanpop", USArrests$Assault / 3, USArrests$UrbanPop)
# no ties, no zeros (R's exact branch; n = 50 only with exact = TRUE)
add("co2", CO2$uptake[CO2$conc == 95], CO2$uptake[CO2$conc == 1000])
add("loblolly", Loblolly$height[Loblolly$age == 3], Loblolly$height[Loblolly$age == 5])
add("puromycin", Puromycin$rate / 100, Puromycin$conc * 5)
add("trees", trees$Girth, trees$Volume)
add("mtcars", mtcars$mpg, mtcars$qsec)
add("lifecyclesavings", LifeCycleSavings$pop15 / 3, LifeCycleSavings$sr)
add("swiss", swiss$Examination * 2, swiss$Agriculture)  # one zero, no ties
# larger n with ties and zeros
add("cats", cats$Bwt * 4, cats$Hwt)
add("airquality", airquality$Wind * 7, airquality$Temp)
add("survey_hands", survey$NW.Hnd, survey$Wr.Hnd)
add("faithful", faithful$waiting / 20, faithful$eruptions)

# --- literal examples ----------------------------------------------------------------------------
# tied ordinal scores (1-5), 20 participants, before and after: changes +1 x 10, 0 x 3,
# -1 x 3, +2 x 3, -2 x 1 (exact p 0.059 but normal approximation 0.048: the decision flips)
add("ordinal_20",
    c(2, 3, 3, 2, 4, 1, 2, 3, 2, 3, 4, 2, 1, 3, 2, 3, 2, 4, 3, 2),
    c(4, 4, 4, 3, 3, 3, 3, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 3))
# values recorded with one decimal: the recorded changes tie (+0.3 eleven times, ...), the
# binary floating-point differences mostly do not (digits.rank = 9 restores the ties)
add("fp_ties",
    c(1.1, 1.2, 1.3, 0.1, 0.2, 2.1, 2.4, 1.7, 0.9, 1.5, 3.1, 2.2, 0.6, 1.8, 2.7, 1.0),
    c(1.4, 1.5, 1.6, 0.4, 0.3, 2.2, 2.1, 1.9, 1.2, 1.8, 3.4, 2.5, 0.5, 2.1, 3.0, 1.3))

# --- reference values ----------------------------------------------------------------------------
rows <- list()
put <- function(case, dr, quantity, value) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, digits_rank = dr, quantity = quantity,
                                          value = sprintf("%.17g", as.numeric(value)))
}
quiet <- function(expr) suppressWarnings(expr)
hl_put <- function(case, dr, prefix, wt, shift = 0) {
  put(case, dr, paste0(prefix, "_estimate"), wt$estimate + shift)
  put(case, dr, paste0(prefix, "_low"), wt$conf.int[1] + shift)
  put(case, dr, paste0(prefix, "_high"), wt$conf.int[2] + shift)
  put(case, dr, paste0(prefix, "_level"), attr(wt$conf.int, "conf.level"))
}
coin_p <- function(dd, zm, dist) {
  z <- rep(0, length(dd))
  pvalue(wilcoxsign_test(dd ~ z, zero.method = zm, distribution = dist))
}
coin_seconds <- numeric(0)
for (name in names(cases)) {
  x <- cases[[name]]$x
  y <- cases[[name]]$y
  d <- y - x
  nz <- d[d != 0]
  for (dr in c(Inf, 9)) {
    drs <- if (is.finite(dr)) "9" else "Inf"
    rk <- rank(abs(if (is.finite(dr)) signif(nz, dr) else nz))
    ties <- length(unique(rk)) < length(rk)
    zeros <- any(d == 0)
    put(name, drs, "n_pairs", length(d))
    put(name, drs, "n_zero", sum(d == 0))
    put(name, drs, "ties", as.integer(ties))
    wa <- quiet(wilcox.test(y, x, paired = TRUE, exact = FALSE, correct = TRUE,
                            digits.rank = dr))
    put(name, drs, "V", wa$statistic)
    put(name, drs, "p_asymptotic_cc", wa$p.value)
    put(name, drs, "p_asymptotic", quiet(wilcox.test(y, x, paired = TRUE, exact = FALSE,
                                                      correct = FALSE, digits.rank = dr))$p.value)
    if (!ties && !zeros) {
      put(name, drs, "p_exact_r", wilcox.test(y, x, paired = TRUE, exact = TRUE,
                                              digits.rank = dr)$p.value)
    }
    # coin on the differences rounded for ranking as digits.rank does (signs unchanged)
    dd <- if (is.finite(dr)) signif(d, dr) else d
    tm <- system.time(pw <- coin_p(dd, "Wilcoxon", "exact"))[["elapsed"]]
    if (!is.finite(dr)) coin_seconds[name] <- tm
    put(name, drs, "p_coin_exact_wilcoxon", pw)
    put(name, drs, "p_coin_exact_pratt", coin_p(dd, "Pratt", "exact"))
    put(name, drs, "p_coin_asymptotic_pratt", coin_p(dd, "Pratt", "asymptotic"))
    # Hodges-Lehmann: R drops zero differences (our zero_method = "wilcoxon")
    if (length(nz) >= 2) {
      hl_put(name, drs, "hl_default", quiet(wilcox.test(y, x, paired = TRUE, conf.int = TRUE,
                                                        digits.rank = dr)))
      if (!ties && !zeros) {
        hl_put(name, drs, "hl_exact", wilcox.test(y, x, paired = TRUE, conf.int = TRUE,
                                                  exact = TRUE, digits.rank = dr))
      }
      hl_put(name, drs, "hl_asymptotic_cc", quiet(wilcox.test(y, x, paired = TRUE,
                                                              conf.int = TRUE, exact = FALSE,
                                                              correct = TRUE, digits.rank = dr)))
      hl_put(name, drs, "hl_asymptotic", quiet(wilcox.test(y, x, paired = TRUE, conf.int = TRUE,
                                                           exact = FALSE, correct = FALSE,
                                                           digits.rank = dr)))
    }
    # all differences, zeros included (our zero_method = "pratt"): R on d - c, shifted back,
    # with c an integer below every difference (so no difference is zero)
    if (zeros && is.infinite(dr)) {
      c0 <- floor(min(d)) - 1
      dc <- d - c0
      if (length(unique(dc)) == length(dc)) {
        hl_put(name, drs, "hl_all_exact", wilcox.test(dc, conf.int = TRUE, exact = TRUE),
               shift = c0)
      }
      hl_put(name, drs, "hl_all_asymptotic_cc", quiet(wilcox.test(dc, conf.int = TRUE,
                                                                  exact = FALSE)), shift = c0)
    }
  }
}
ref <- do.call(rbind, rows)
write.csv(ref, file.path(out_dir, "wilcoxon_reference.csv"), row.names = FALSE, quote = FALSE)
data_rows <- do.call(rbind, lapply(names(cases), function(nm) {
  data.frame(case = nm, i = seq_along(cases[[nm]]$x), x = sprintf("%.17g", cases[[nm]]$x),
             y = sprintf("%.17g", cases[[nm]]$y))
}))
write.csv(data_rows, file.path(out_dir, "wilcoxon_data.csv"), row.names = FALSE, quote = FALSE)
# R's signif (used by digits.rank) on awkward values, and the untied signed-rank distribution
sx <- c(0.15, 0.25, 2.5, -2.5, 0.1 + 0.2, 0.3, 1.2 - 1.1, 1.3 - 1.2, 123456.789, -0.000123456789,
        1e-300, 5e-324, 1.7976931348623157e308, 2 / 3, 99.95, 1 - 1e-16, 4.35, 1.005)
sg <- expand.grid(i = seq_along(sx), digits = c(1, 2, 3, 6, 9, 12, 15, 17, 22))
write.csv(data.frame(x = sprintf("%.17g", sx[sg$i]), digits = sg$digits,
                     signif = sprintf("%.17g", signif(sx[sg$i], sg$digits))),
          file.path(out_dir, "wilcoxon_signif.csv"), row.names = FALSE, quote = FALSE)
sr <- do.call(rbind, lapply(1:60, function(n) {
  q <- unique(pmin(c(0:8, qsignrank(c(0.005, 0.025, 0.05), n) + (-1:1)[rep(1:3, 3)],
                     floor(n * (n + 1) / 4)), n * (n + 1) / 2))
  q <- sort(unique(q[q >= 0]))
  data.frame(n = n, q = q, psignrank = sprintf("%.17g", psignrank(q, n)),
             qsignrank_0.025 = qsignrank(0.025, n), qsignrank_0.005 = qsignrank(0.005, n))
}))
write.csv(sr, file.path(out_dir, "wilcoxon_signrank.csv"), row.names = FALSE, quote = FALSE)

cat(R.version.string, "coin", as.character(packageVersion("coin")), "MASS",
    as.character(packageVersion("MASS")), "\n")
cat("coin exact (zero.method = Wilcoxon), elapsed seconds per case:\n")
print(round(coin_seconds, 4))
