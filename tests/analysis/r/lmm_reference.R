# Reference numbers for hepatrial's linear mixed models (tests/analysis/test_lmm*.py,
# tests/analysis/test_ddf*.py): lme4 fits, lmerTest Satterthwaite and pbkrtest Kenward-Roger
# t tests and F tests, singular fits.
#
# Run from the repository root (Debian: apt-get install r-base-core r-cran-lme4
# r-cran-lmertest r-cran-pbkrtest r-cran-nlme r-cran-jsonlite):
#   Rscript tests/analysis/r/lmm_reference.R
# Writes tests/data/analysis/{sleepstudy,orthodont,bodyweight,chickweight,sim_zero_slope}.csv
# (datasets R ships, exported once) and tests/data/analysis/r_lmm_reference.json.
# Computed with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, nlme 3.1-162.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(nlme); library(jsonlite)
})
out_dir <- "tests/data/analysis"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
wcsv <- function(d, name) write.csv(d, file.path(out_dir, name), row.names = FALSE)

ss <- as.data.frame(lme4::sleepstudy)
ss$Subject <- as.character(ss$Subject)
wcsv(ss, "sleepstudy.csv")
orth <- as.data.frame(nlme::Orthodont)
orth$Subject <- as.character(orth$Subject)
orth$Sex <- factor(as.character(orth$Sex), levels = c("Male", "Female"))
wcsv(orth, "orthodont.csv")
bw <- as.data.frame(nlme::BodyWeight)
bw$Rat <- as.character(bw$Rat); bw$Diet <- factor(as.character(bw$Diet))
wcsv(bw, "bodyweight.csv")
cw <- as.data.frame(datasets::ChickWeight)
cw$Chick <- as.character(cw$Chick); cw$Diet <- factor(as.character(cw$Diet))
wcsv(cw, "chickweight.csv")

# Simulated: 30 subjects x 5 times, random intercept only (true slope variance 0); the seed is
# the first one whose (1 + time | id) REML fit is singular.
for (seed in 1:100) {
  set.seed(seed)
  sim <- expand.grid(time = 0:4, id = sprintf("S%02d", 1:30), stringsAsFactors = FALSE)
  b0 <- rnorm(30, 0, 2)
  sim$y <- round(10 + 0.5 * sim$time + b0[match(sim$id, sprintf("S%02d", 1:30))] +
                   rnorm(nrow(sim), 0, 1), 4)
  fit <- suppressMessages(lmer(y ~ time + (1 + time | id), data = sim))
  th <- getME(fit, "theta")
  if (isSingular(fit) && th[3] == 0) break
}
sim <- sim[, c("id", "time", "y")]
wcsv(sim, "sim_zero_slope.csv")
sim <- read.csv(file.path(out_dir, "sim_zero_slope.csv"))

demo <- read.csv(file.path(out_dir, "demo_kharaziha2009_synthetic.csv"))
demo$visit <- factor(demo$visit, levels = c("D0", "W1", "W2", "W4", "W8", "W24"))
pbc <- read.csv("src/hepatrial/data/pbcseq.csv")
pbc$year <- pbc$day / 365.25
pbc$id <- as.character(pbc$id)

tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
# one fit: everything the tests compare
one <- function(formula, data, names_py, ftests = list()) {
  # bobyqa with a tight rhoend: lme4's default stopping rule leaves BodyWeight short of the
  # optimum (logLik -575.85998 vs -575.85987, "failed to converge"); the default fit's logLik is
  # kept as loglik_default.
  m0 <- suppressWarnings(suppressMessages(lme4::lmer(formula, data = data, REML = TRUE)))
  m <- suppressMessages(lmerTest::lmer(formula, data = data, REML = TRUE, control = tight))
  stopifnot(identical(length(names_py), length(fixef(m))))
  sat <- summary(m, ddf = "Satterthwaite")$coefficients
  kr <- summary(m, ddf = "Kenward-Roger")$coefficients
  va <- as.matrix(pbkrtest::vcovAdj(m))
  vc <- as.matrix(vcov(m))
  fixed <- list()
  for (i in seq_along(names_py)) {
    fixed[[names_py[i]]] <- list(
      estimate = unname(fixef(m)[i]), se = unname(sqrt(vc[i, i])),
      satterthwaite = list(se = unname(sat[i, 2]), df = unname(sat[i, 3]),
                           t = unname(sat[i, 4]), p = unname(sat[i, 5])),
      kenward_roger = list(se = unname(kr[i, 2]), df = unname(kr[i, 3]),
                           t = unname(kr[i, 4]), p = unname(kr[i, 5])))
  }
  ft <- list()
  for (nm in names(ftests)) {
    idx <- match(ftests[[nm]], names_py)
    stopifnot(!anyNA(idx))
    L <- matrix(0, length(idx), length(names_py))
    L[cbind(seq_along(idx), idx)] <- 1
    s <- contest(m, L, ddf = "Satterthwaite", joint = TRUE)
    k <- contest(m, L, ddf = "Kenward-Roger", joint = TRUE)
    ft[[nm]] <- list(terms = ftests[[nm]],
      satterthwaite = list(F = s[["F value"]], ndf = s[["NumDF"]], ddf = s[["DenDF"]],
                           p = s[["Pr(>F)"]]),
      kenward_roger = list(F = k[["F value"]], ndf = k[["NumDF"]], ddf = k[["DenDF"]],
                           p = k[["Pr(>F)"]]))
  }
  vcr <- VarCorr(m)[[1]]
  list(formula = paste(deparse(formula), collapse = ""), n_obs = nobs(m),
       loglik = as.numeric(logLik(m)), loglik_default = as.numeric(logLik(m0)),
       singular_default = isSingular(m0), reml_criterion = unname(REMLcrit(m)),
       theta = unname(getME(m, "theta")), sigma = sigma(m),
       residual_variance = sigma(m)^2, cov_re = unname(as.matrix(vcr)[, ]),
       singular = isSingular(m), fixed = fixed, vcov = unname(vc), vcov_kr = unname(va),
       f_tests = ft)
}

ref <- list()
ref$sleepstudy_slope <- one(Reaction ~ Days + (Days | Subject), ss, c("Intercept", "Days"))
ss$Daysf <- factor(ss$Days)
ref$sleepstudy_days_factor <- one(Reaction ~ Daysf + (1 | Subject), ss,
  c("Intercept", sprintf("Days[%d]", 1:9)), list(Days = sprintf("Days[%d]", 1:9)))
ref$orthodont_slope_sex <- one(distance ~ age * Sex + (age | Subject), orth,
  c("Intercept", "age", "Sex[Female]", "age:Sex[Female]"),
  list("Sex:age" = "age:Sex[Female]"))
orth$agef <- factor(orth$age)
ref$orthodont_agefactor_sex <- one(distance ~ agef * Sex + (1 | Subject), orth,
  c("Intercept", "age[10]", "age[12]", "age[14]", "Sex[Female]",
    "age[10]:Sex[Female]", "age[12]:Sex[Female]", "age[14]:Sex[Female]"),
  list("Sex:age" = c("age[10]:Sex[Female]", "age[12]:Sex[Female]", "age[14]:Sex[Female]")))
ref$bodyweight_slope_diet <- one(weight ~ Time * Diet + (Time | Rat), bw,
  c("Intercept", "Time", "Diet[2]", "Diet[3]", "Time:Diet[2]", "Time:Diet[3]"),
  list("Diet:Time" = c("Time:Diet[2]", "Time:Diet[3]")))
ref$chickweight_slope_diet <- one(weight ~ Time * Diet + (Time | Chick), cw,
  c("Intercept", "Time", "Diet[2]", "Diet[3]", "Diet[4]",
    "Time:Diet[2]", "Time:Diet[3]", "Time:Diet[4]"),
  list("Diet:Time" = c("Time:Diet[2]", "Time:Diet[3]", "Time:Diet[4]")))
ref$sim_zero_slope <- one(y ~ time + (1 + time | id), sim, c("Intercept", "time"))
ref$pbcseq_logbili_slope <- one(log(bili) ~ year + (year | id), pbc, c("Intercept", "year"))
ref$pbcseq_albumin_slope <- one(albumin ~ year + (year | id), pbc, c("Intercept", "year"))
ref$pbcseq_logbili_trt <- one(log(bili) ~ year * trt + (year | id), transform(pbc, trt = factor(trt)),
  c("Intercept", "year", "trt[1]", "year:trt[1]"), list("trt:year" = "year:trt[1]"))
vis <- c("W1", "W2", "W4", "W8", "W24")
for (a in c("meld_kamath2001", "inr", "creatinine", "albumin", "bilirubin")) {
  d <- demo[demo$analyte == a, ]
  ref[[paste0("demo_visit_", a)]] <- one(value ~ visit + (1 | participant_id), d,
    c("Intercept", sprintf("visit[%s]", vis)), list(visit = sprintf("visit[%s]", vis)))
}
for (a in c("creatinine", "meld_kamath2001")) {
  d <- demo[demo$analyte == a, ]
  ref[[paste0("demo_week_slope_", a)]] <- one(value ~ week + (1 + week | participant_id), d,
    c("Intercept", "week"))
}
ref$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  sim_seed = seed)
writeLines(toJSON(ref, digits = I(15), auto_unbox = TRUE, pretty = TRUE),
           file.path(out_dir, "r_lmm_reference.json"))
cat("wrote", file.path(out_dir, "r_lmm_reference.json"), "\n")
