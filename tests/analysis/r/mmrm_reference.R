# Reference numbers for hepatrial's MMRM (tests/analysis/test_mmrm*.py): nlme::gls fits with
# unstructured (corSymm + varIdent), compound-symmetry, AR(1) and Toeplitz (corARMA(p = T-1))
# covariance over visits, REML; least-squares means and changes from baseline with
# Satterthwaite df
# (computed here from first principles with numDeriv, see satt_reference); Kenward-Roger adjusted covariance and df by
# pbkrtest's own routines (vcovAdj_internal, Lb_ddf, KRmodcomp's .KR_adjust) applied to the
# gls fit's covariance written in its linear parametrisation (Sigma = sum_k tau_k G_k).
# The R package mmrm is not in Debian; gls is the reference the issue names.
#
# Run from the repository root after lmm_reference.R (Debian: r-base-core r-cran-nlme
# r-cran-pbkrtest r-cran-jsonlite r-cran-numderiv):
#   Rscript tests/analysis/r/mmrm_reference.R
# Writes tests/data/analysis/r_mmrm_reference.json.
suppressPackageStartupMessages({
  library(nlme); library(pbkrtest); library(numDeriv); library(jsonlite); library(Matrix)
})
out_dir <- "tests/data/analysis"
ctl <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                  returnObject = FALSE)

# Sigma (visits x visits) of the fit, in visit order
sigma_of <- function(fit, nvis) {
  cs <- fit$modelStruct$corStruct
  corr <- if (is.null(cs)) diag(nvis) else {
    m <- corMatrix(cs)
    m <- m[[which.max(sapply(m, nrow))]]
    m
  }
  sds <- rep(fit$sigma, nvis)
  vs <- fit$modelStruct$varStruct
  if (!is.null(vs)) {
    w <- coef(vs, unconstrained = FALSE, allCoef = TRUE)
    sds <- fit$sigma * w[as.character(seq_len(nvis))]
  }
  diag(sds) %*% corr %*% diag(sds)
}

# linear parametrisation of Sigma for KR: unstructured = every entry (a <= b),
# Toeplitz = one parameter per band, compound symmetry = (diagonal, off-diagonal)
g_basis <- function(structure, nvis) {
  G <- list()
  if (structure == "us") {
    for (b in seq_len(nvis)) for (a in seq_len(b)) {
      E <- matrix(0, nvis, nvis); E[a, b] <- 1; E[b, a] <- 1; G[[length(G) + 1]] <- E
    }
  } else if (structure == "toep") {
    for (k in 0:(nvis - 1)) G[[length(G) + 1]] <- 1 * (abs(outer(1:nvis, 1:nvis, "-")) == k)
  } else if (structure == "cs") {
    G[[1]] <- diag(nvis); G[[2]] <- matrix(1, nvis, nvis) - diag(nvis)
  }
  G
}

kr_reference <- function(fit, d, structure, nvis, L_list, F_list) {
  S <- sigma_of(fit, nvis)
  Gb <- g_basis(structure, nvis)
  ids <- unique(d$id)
  blocks <- lapply(ids, function(i) d$idx[d$id == i])
  Sigma <- bdiag(lapply(blocks, function(v) S[v, v, drop = FALSE]))
  G <- lapply(Gb, function(E) bdiag(lapply(blocks, function(v) E[v, v, drop = FALSE])))
  X <- model.matrix(formula(fit), d)
  Phi <- vcov(fit)
  PhiA <- pbkrtest:::vcovAdj_internal(Phi, list(Sigma = Sigma, G = G, n.ggamma = length(G)), X)
  t1 <- lapply(L_list, function(L) {
    L <- matrix(L, nrow = 1)
    list(estimate = drop(L %*% coef(fit)), se = sqrt(drop(L %*% PhiA %*% t(L))),
         df = pbkrtest:::Lb_ddf(L, Phi, PhiA))
  })
  ft <- lapply(F_list, function(L) {
    s <- pbkrtest:::.KR_adjust(PhiA, Phi, L, coef(fit), 0)
    list(F = s$Fstat, ndf = s$ndf, ddf = s$ddf, p = s$p.value)
  })
  list(vcov_kr = unname(as.matrix(PhiA)), contrasts = t1, f_tests = ft)
}

# Sigma(tau) for each structure; tau is the linear parametrisation above, (sigma^2, rho) for AR1
sigma_tau <- function(structure, nvis, tau) {
  if (structure == "ar1") return(tau[1] * tau[2]^abs(outer(1:nvis, 1:nvis, "-")))
  Reduce(`+`, Map(`*`, tau, g_basis(structure, nvis)))
}
tau_of <- function(structure, S) {
  nvis <- nrow(S)
  switch(structure,
    us = S[upper.tri(S, diag = TRUE)],
    toep = sapply(0:(nvis - 1), function(k) S[1, 1 + k]),
    cs = c(S[1, 1], S[1, 2]),
    ar1 = c(S[1, 1], S[1, 2] / S[1, 1]))
}

# Satterthwaite from first principles (independent of hepatrial's analytic derivatives):
# the REML -2 log-likelihood written densely, its Hessian and the Jacobian of
# Phi = (X' Sigma^-1 X)^-1 by numDeriv (Richardson), df = 2 (l' Phi l)^2 / (g' A g),
# A = 2 H^-1; multi-df F as lmerTest's contestMD (Fai & Cornelius 1996).
satt_reference <- function(fit, d, structure, nvis, L_list, F_list, lsm_L) {
  X <- model.matrix(formula(fit), d)
  y <- d[[all.vars(formula(fit))[1]]]
  ids <- unique(d$id)
  blocks <- lapply(ids, function(i) which(d$id == i))
  vidx <- lapply(blocks, function(r) d$idx[r])
  parts <- function(tau) {
    S <- sigma_tau(structure, nvis, tau)
    XtSX <- 0; XtSy <- 0; ld <- 0; ySy <- 0
    for (b in seq_along(blocks)) {
      r <- blocks[[b]]; v <- vidx[[b]]
      Si <- solve(S[v, v, drop = FALSE])
      ld <- ld + as.numeric(determinant(S[v, v, drop = FALSE])$modulus)
      Xb <- X[r, , drop = FALSE]
      XtSX <- XtSX + t(Xb) %*% Si %*% Xb
      XtSy <- XtSy + t(Xb) %*% Si %*% y[r]
      ySy <- ySy + drop(t(y[r]) %*% Si %*% y[r])
    }
    list(A = XtSX, c = XtSy, ld = ld, ySy = ySy)
  }
  reml2 <- function(tau) {
    p <- parts(tau)
    beta <- solve(p$A, p$c)
    p$ld + as.numeric(determinant(p$A)$modulus) + p$ySy - drop(t(p$c) %*% beta) +
      (nrow(X) - ncol(X)) * log(2 * pi)
  }
  phi <- function(tau) solve(parts(tau)$A)
  tau <- tau_of(structure, sigma_of(fit, nvis))
  check <- reml2(tau) / -2 - as.numeric(logLik(fit))
  stopifnot(abs(check) < 1e-6)
  # small relative steps: numDeriv's default d = 0.1 moves Sigma by 10 % and, near the
  # boundary of positive-definiteness, off the likelihood's quadratic region
  ma <- list(eps = 1e-6, d = 1e-3, zero.tol = sqrt(.Machine$double.eps / 7e-7), r = 4, v = 2)
  # gls stops ~1e-5 (relative, in Sigma) short of the optimum; the Hessian-based df of models
  # with many covariance parameters move by up to 5e-3 with that, so polish tau first
  gr <- function(t) numDeriv::grad(reml2, t, method.args = ma)
  opt <- optim(tau, reml2, gr, method = "BFGS",
               control = list(reltol = 1e-15, maxit = 500, ndeps = rep(1e-6, length(tau))))
  if (opt$value < reml2(tau)) tau <- opt$par
  polished_loglik <- reml2(tau) / -2
  polished_grad <- max(abs(gr(tau)))
  H <- numDeriv::hessian(reml2, tau, method.args = ma)
  A <- 2 * solve(H)
  Phi <- phi(tau)
  J <- numDeriv::jacobian(function(t) c(phi(t)), tau, method.args = ma)
  Jl <- lapply(seq_len(ncol(J)), function(k) matrix(J[, k], ncol(X)))
  df1 <- function(L) {
    g <- sapply(Jl, function(M) drop(t(L) %*% M %*% L))
    2 * drop(t(L) %*% Phi %*% L)^2 / drop(t(g) %*% A %*% g)
  }
  one <- function(L) list(estimate = sum(L * coef(fit)), se = sqrt(drop(t(L) %*% Phi %*% L)),
                          df = df1(L))
  Ftest <- function(L) {
    ev <- eigen(L %*% Phi %*% t(L)); P <- ev$vectors; dd <- ev$values
    q <- sum(dd > max(sqrt(.Machine$double.eps) * dd[1], 0))
    PtL <- crossprod(P, L)[1:q, , drop = FALSE]
    Fv <- sum(drop(PtL %*% beta_hat)^2 / dd[1:q]) / q
    nu <- sapply(1:q, function(m) df1(PtL[m, ]))
    E <- sum(nu / (nu - 2))
    ddf <- if (q == 1) nu else if (any(nu <= 2)) 2 else 2 * E / (E - q)
    list(F = Fv, ndf = q, ddf = ddf, p = pf(Fv, q, ddf, lower.tail = FALSE))
  }
  p_hat <- parts(tau)
  beta_hat <- drop(solve(p_hat$A, p_hat$c))
  one <- function(L) list(estimate = sum(L * beta_hat), se = sqrt(drop(t(L) %*% Phi %*% L)),
                          df = df1(L))
  list(tau = tau, loglik = polished_loglik, max_grad = polished_grad, contrasts = lapply(L_list, one), f_tests = lapply(F_list, Ftest),
       lsmeans = lapply(seq_len(nrow(lsm_L)), function(i) one(lsm_L[i, ])),
       change_from_baseline = lapply(seq_len(nrow(lsm_L)), function(i)
         one(lsm_L[i, ] - lsm_L[attr(lsm_L, "base")[i], ])))
}

fit_one <- function(d, form, structure, nvis, names_py, L_list, F_list, grid) {
  cor <- switch(structure,
    us = corSymm(form = ~ idx | id),
    cs = corCompSymm(form = ~ idx | id),
    ar1 = corAR1(form = ~ idx | id),
    toep = corARMA(form = ~ idx | id, p = nvis - 1))
  wts <- if (structure == "us") varIdent(form = ~ 1 | idx) else NULL
  fit <- gls(form, data = d, correlation = cor, weights = wts, method = "REML",
             control = ctl, na.action = na.omit)
  stopifnot(length(coef(fit)) == length(names_py))
  S <- sigma_of(fit, nvis)
  # least-squares means: the model-matrix rows of the visit (x group) grid (emmeans' rule
  # without covariates); change from baseline: minus the same group's first visit
  lsm_L <- model.matrix(delete.response(terms(form)), grid)
  attr(lsm_L, "base") <- if (ncol(grid) == 1) rep(1, nrow(grid)) else
    match(as.character(grid[[2]]), as.character(grid[[2]]))
  out <- list(structure = structure, n_obs = nrow(d), loglik = as.numeric(logLik(fit)),
              coef = setNames(as.list(unname(coef(fit))), names_py),
              vcov = unname(vcov(fit)), sigma = unname(S), grid = grid,
              satterthwaite = satt_reference(fit, d, structure, nvis, L_list, F_list, lsm_L))
  if (structure != "ar1") out$kr <- kr_reference(fit, d, structure, nvis, L_list, F_list)
  out
}

ref <- list()

# Orthodont: 27 children x 4 ages, distance ~ age (factor) * Sex
orth <- read.csv(file.path(out_dir, "orthodont.csv"))
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
orth$agef <- factor(orth$age)
orth$idx <- as.integer(orth$agef)
orth$id <- orth$Subject
onames <- c("Intercept", "age[10]", "age[12]", "age[14]", "Sex[Female]",
            "age[10]:Sex[Female]", "age[12]:Sex[Female]", "age[14]:Sex[Female]")
e <- function(k, p = 8) { v <- rep(0, p); v[k] <- 1; v }
oL <- list("Sex[Female]" = e(5), "age[14]" = e(4), "age[14]:Sex[Female]" = e(8),
           "female_minus_male_at_14" = e(5) + e(8))
oF <- list("Sex:age" = rbind(e(6), e(7), e(8)), "age" = rbind(e(2), e(3), e(4)))
for (st in c("us", "cs", "ar1", "toep")) {
  ref[[paste0("orthodont_", st)]] <- fit_one(orth, distance ~ agef * Sex, st, 4, onames,
    oL, oF, expand.grid(agef = levels(orth$agef), Sex = levels(orth$Sex)))
}

# ChickWeight, days 0, 4, 8, 12, 16, 20: dropout gives 5 visit patterns
cw <- read.csv(file.path(out_dir, "chickweight.csv"))
cw <- cw[cw$Time %in% c(0, 4, 8, 12, 16, 20), ]
cw$timef <- factor(cw$Time)
cw$idx <- as.integer(cw$timef)
cw$id <- cw$Chick
cwn <- c("Intercept", sprintf("Time[%d]", c(4, 8, 12, 16, 20)))
cL <- list("Time[20]" = e(6, 6), "Time[20]-Time[16]" = e(6, 6) - e(5, 6))
cF <- list("Time" = rbind(e(2, 6), e(3, 6), e(4, 6), e(5, 6), e(6, 6)))
for (st in c("us", "ar1", "toep")) {
  ref[[paste0("chickweight_", st)]] <- fit_one(cw, weight ~ timef, st, 6, cwn, cL, cF,
    data.frame(timef = factor(levels(cw$timef), levels = levels(cw$timef))))
}
ref$chickweight_patterns <- as.list(table(tapply(cw$idx, cw$id, paste, collapse = "")))

# the demo cohort (8 patients x 6 visits): MELD (Kamath 2001) and creatinine
demo <- read.csv(file.path(out_dir, "demo_kharaziha2009_synthetic.csv"))
vis <- c("D0", "W1", "W2", "W4", "W8", "W24")
demo$visit <- factor(demo$visit, levels = vis)
demo$idx <- as.integer(demo$visit)
demo$id <- demo$participant_id
dn <- c("Intercept", sprintf("visit[%s]", vis[-1]))
dL <- list("visit[W24]" = e(6, 6), "visit[W4]" = e(4, 6))
dF <- list("visit" = rbind(e(2, 6), e(3, 6), e(4, 6), e(5, 6), e(6, 6)))
for (a in c("meld_kamath2001", "creatinine")) {
  d <- demo[demo$analyte == a, ]
  for (st in c("us", "cs", "ar1", "toep")) {
    ref[[paste0("demo_", a, "_", st)]] <- fit_one(d, value ~ visit, st, 6, dn, dL, dF,
      data.frame(visit = factor(vis, levels = vis)))
  }
}

ref$versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  numDeriv = as.character(packageVersion("numDeriv")))
writeLines(toJSON(ref, digits = I(15), auto_unbox = TRUE, pretty = TRUE),
           file.path(out_dir, "r_mmrm_reference.json"))
cat("wrote", file.path(out_dir, "r_mmrm_reference.json"), "\n")
