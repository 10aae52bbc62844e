# lme4's CPU time and estimates for the models of benchmarks/bench_lmm.py.
#
# Run once from the repository root (Debian: r-base-core r-cran-lme4 r-cran-jsonlite):
#   uv run python benchmarks/bench_lmm.py --export /tmp/bench_lmm
#   Rscript benchmarks/r/bench_lmm.R /tmp/bench_lmm
# Writes benchmarks/r/lme4_times.json (committed): per model the median CPU time (user + sys)
# of 7 lmer() calls with lme4's defaults, and the estimates (fixed effects, theta, sigma,
# REML logLik).
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "/tmp/bench_lmm"
models <- fromJSON(file.path(dir, "models.json"), simplifyVector = FALSE)
out <- list()
for (m in models) {
  d <- read.csv(file.path(dir, m$csv), stringsAsFactors = FALSE)
  if (!is.null(m$levels)) for (v in names(m$levels)) d[[v]] <- factor(d[[v]], levels = unlist(m$levels[[v]]))
  f <- as.formula(m$formula)
  fit <- lmer(f, data = d, REML = TRUE)
  times <- sapply(1:7, function(i) {
    st <- system.time(lmer(f, data = d, REML = TRUE))
    st[["user.self"]] + st[["sys.self"]]
  })
  fe <- fixef(fit)
  out[[m$name]] <- list(formula = m$formula, n_obs = nobs(fit), cpu_s = median(times),
    cpu_s_all = times, fixef = as.list(fe), theta = unname(getME(fit, "theta")),
    sigma = sigma(fit), loglik = as.numeric(logLik(fit)), singular = isSingular(fit),
    messages = fit@optinfo$conv$lme4$messages)
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     Matrix = as.character(packageVersion("Matrix")),
                     blas = extSoftVersion()[["BLAS"]])
writeLines(toJSON(out, digits = I(15), auto_unbox = TRUE, pretty = TRUE, null = "null"),
           "benchmarks/r/lme4_times.json")
cat("wrote benchmarks/r/lme4_times.json\n")
