/* The plain C side of bench/check.lua: loops that call revledger_check and
 * revledger_check_jwt directly, built as a shared object that the Lua benchmark loads,
 * so that the C loop and the Lua loop run in one process, on one ledger handle,
 * round after round. Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that
 * the time the machine's other work preempts the loop is not counted. */
#define _POSIX_C_SOURCE 199309L
#include "revledger.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A ledger of `rules` subject rules and one role rule; 0 or a status. */
int bench_create(const char *path, long rules) {
  revledger *w = NULL;
  revledger_status s = revledger_open_writer(path, 3600, &w);
  char key[32];
  for (long i = 0; s == REVLEDGER_OK && i < rules; i++) {
    int n = snprintf(key, sizeof key, "user-%ld", i);
    revledger_bytes tenant = {(const uint8_t *)"acme", 4}, k = {(const uint8_t *)key, (size_t)n};
    s = revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, tenant, k, 1700000000);
  }
  revledger_close(w);
  return (int)s;
}

/* ns per revledger_check over n calls; -1 on an error or a revoked verdict. */
double bench_check(const revledger *r, const revledger_token *t, long n) {
  revledger_verdict v;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (revledger_check(r, t, &v) != REVLEDGER_OK || v.revoked) return -1;
  }
  return (now_ns() - t0) / n;
}

/* ns per revledger_check_jwt over n calls; -1 on an error or a revoked verdict. */
double bench_check_jwt(const revledger *r, const revledger_claims *c, const uint8_t *jwt,
                       size_t len, long n) {
  revledger_verdict v;
  revledger_bytes b = {jwt, len};
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (revledger_check_jwt(r, c, b, &v) != REVLEDGER_OK || v.revoked) return -1;
  }
  return (now_ns() - t0) / n;
}
