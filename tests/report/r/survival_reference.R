# Reference numbers for hepatrial.analysis.survival (Kaplan-Meier and Aalen-Johansen) from
# R's survival package (Therneau), on data sets R ships (survival::aml, survival::lung,
# survival::pbc) and on small constructed boundary cases.
#
#   Rscript tests/report/r/survival_reference.R   (from the repository root)
#
# writes tests/report/r/survival_reference.json (numbers) and survival_data.json (the
# input data, so the tests never need R). R 4.x, survival 3.5-3, jsonlite.
suppressPackageStartupMessages({library(survival); library(jsonlite)})

km <- function(time, status) {
  f <- survfit(Surv(time, status) ~ 1, conf.type = "log", conf.int = 0.95)
  s <- summary(f)  # event times only
  q <- quantile(f, 0.5)
  list(time = s$time, n_risk = s$n.risk, n_event = s$n.event, surv = s$surv,
       std_err = s$std.err, lower = s$lower, upper = s$upper,
       median = unname(q$quantile), median_lower = unname(q$lower),
       median_upper = unname(q$upper), n = f$n, events = sum(status))
}

aj <- function(time, status, states) {
  f <- survfit(Surv(time, factor(status, 0:(length(states)), c("censor", states))) ~ 1)
  keep <- rowSums(f$n.event) > 0
  out <- list(time = f$time[keep], n_risk = f$n.risk[keep, 1])
  for (k in seq_along(states)) out[[states[k]]] <- f$pstate[keep, k + 1]
  out$free <- f$pstate[keep, 1]
  out
}

lung2 <- data.frame(time = lung$time, status = as.integer(lung$status == 2))
pbc2 <- data.frame(time = pbc$time, status = pbc$status)  # 0 censored, 1 transplant, 2 death
cases <- list(
  aml_maintained = aml[aml$x == "Maintained", c("time", "status")],
  aml_nonmaintained = aml[aml$x == "Nonmaintained", c("time", "status")],
  lung = lung2,
  # boundaries: every participant censored; an event at time 0; an event and a censoring
  # at the same time (the censored one is at risk at that time); S = 0.5 exactly on an
  # interval (R's median: the midpoint of that interval); last observation an event (S = 0)
  all_censored = data.frame(time = c(168, 168, 150), status = c(0, 0, 0)),
  event_at_zero = data.frame(time = c(0, 3, 5, 5, 9), status = c(1, 1, 0, 1, 0)),
  tie_event_censor = data.frame(time = c(2, 4, 4, 4, 7, 8), status = c(1, 1, 0, 0, 1, 0)),
  median_flat = data.frame(time = c(1, 2, 3, 4), status = c(1, 1, 1, 1)),
  # the DSMB report's "triggered" scenario (hepatrial.demo.safety_scenario): days from
  # infusion to the first related AE or the end of follow-up, 8 participants
  dsmb_triggered = data.frame(time = c(0, 0, 9, 125, 111, 96, 80, 60),
                              status = c(1, 1, 1, 0, 0, 0, 0, 0))
)
ref <- list(km = list(), aj = list())
for (nm in names(cases)) {
  d <- cases[[nm]]
  if (sum(d$status) > 0) {
    ref$km[[nm]] <- km(d$time, d$status)
  } else {
    f <- survfit(Surv(d$time, d$status) ~ 1)
    ref$km[[nm]] <- list(time = numeric(0), n = f$n, events = 0,
                         surv_last = f$surv[length(f$surv)], median = NA)
  }
}
ref$aj$pbc <- aj(pbc2$time, pbc2$status, c("transplant", "death"))
ref$aj$small <- aj(c(1, 2, 2, 3, 5, 6, 6, 8), c(1, 2, 0, 1, 2, 0, 1, 0), c("event", "death"))
ref$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")))
cases$pbc <- pbc2
cases$aj_small <- data.frame(time = c(1, 2, 2, 3, 5, 6, 6, 8), status = c(1, 2, 0, 1, 2, 0, 1, 0))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, na = "null", pretty = TRUE),
           "tests/report/r/survival_reference.json")
writeLines(toJSON(cases, digits = NA, dataframe = "columns", pretty = FALSE),
           "tests/report/r/survival_data.json")
