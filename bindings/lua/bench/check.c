/* The plain C calls that bindings/lua/bench/check.lua is compared with: revledger_check
 * and revledger_check_jwt on the same ledger, token and JWT, in a loop.
 *   check <ledger> <rules> <jwt>   creates the ledger with <rules> subject rules (if
 *                                  <rules> > 0), then prints ns per call. */
#define _POSIX_C_SOURCE 199309L
#include "revledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static revledger_bytes bytes(const char *s) {
  revledger_bytes b = {(const uint8_t *)s, strlen(s)};
  return b;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what, revledger_status s) {
  fprintf(stderr, "%s: %s: %s\n", what, revledger_status_name(s), revledger_last_error());
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: check <ledger> <rules> <jwt>\n");
    return 2;
  }
  long rules = atol(argv[2]);
  revledger_status s;
  if (rules > 0) {
    revledger *w = NULL;
    if ((s = revledger_open_writer(argv[1], 3600, &w)) != REVLEDGER_OK) die("open_writer", s);
    char key[32];
    for (long i = 0; i < rules; i++) {
      snprintf(key, sizeof key, "user-%ld", i);
      if ((s = revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, bytes("acme"), bytes(key),
                                1700000000)) != REVLEDGER_OK)
        die("revoke", s);
    }
    if ((s = revledger_revoke(w, REVLEDGER_SCOPE_ROLE, bytes("acme"), bytes("super_admin"),
                              1700000000)) != REVLEDGER_OK)
      die("revoke", s);
    revledger_close(w);
  }

  revledger *r = NULL;
  revledger_claims *claims = NULL;
  if ((s = revledger_open_reader(argv[1], &r)) != REVLEDGER_OK) die("open_reader", s);
  if ((s = revledger_claims_new("generic", &claims)) != REVLEDGER_OK) die("claims_new", s);

  revledger_bytes roles[] = {bytes("billing"), bytes("reports"), bytes("editor")};
  revledger_token t;
  memset(&t, 0, sizeof t);
  t.tenant = bytes("acme");
  t.subject = bytes("3f2b8c1e-5d0a-4c1b-9a7e-2b9d6f1e0c44");
  t.client = bytes("web-app");
  t.session = bytes("0e8c2a6d-1f3b-4d5e-8a9c-7b6d5e4f3a2b");
  t.token_id = bytes("9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4");
  t.roles = roles;
  t.roles_len = 3;
  t.issued_at = 1699999000;
  revledger_bytes jwt = bytes(argv[3]);

  revledger_verdict v;
  const long n = 2000000, m = 500000;
  long revoked = 0;
  double best_check = 1e30, best_jwt = 1e30;
  for (int round = 0; round < 5; round++) {
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
      if (revledger_check(r, &t, &v) != REVLEDGER_OK) die("check", REVLEDGER_INTERNAL);
      revoked += v.revoked;
    }
    double t1 = now_ns();
    for (long i = 0; i < m; i++) {
      if (revledger_check_jwt(r, claims, jwt, &v) != REVLEDGER_OK) die("check_jwt", REVLEDGER_INTERNAL);
      revoked += v.revoked;
    }
    double t2 = now_ns();
    if ((t1 - t0) / n < best_check) best_check = (t1 - t0) / n;
    if ((t2 - t1) / m < best_jwt) best_jwt = (t2 - t1) / m;
  }
  if (revoked) {
    fprintf(stderr, "the benchmark token was found revoked\n");
    return 1;
  }
  printf("C   revledger_check          %7.1f ns\n", best_check);
  printf("C   revledger_check_jwt      %7.1f ns\n", best_jwt);
  revledger_claims_free(claims);
  revledger_close(r);
  return 0;
}
