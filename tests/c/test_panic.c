/* The panic boundary, from C: a panic provoked inside revledger on purpose
 * (revledger_testing_panic_in) never crosses into C. The call that panicked returns
 * REVLEDGER_INTERNAL saying so; the handle it was given is poisoned (every later call
 * on it returns REVLEDGER_INTERNAL saying why) and still closes; other handles go on;
 * functions without a status return their fallback. */
#include "harness.h"

static bool contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

static bool poisoned(revledger_status s) {
  return s == REVLEDGER_INTERNAL && contains(revledger_last_error(), "poisoned") &&
         contains(revledger_last_error(), "provoked by revledger_testing_panic_in");
}

static void a_panic_in_check_poisons_that_handle_only(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL, *other = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  REQUIRE(OK(revledger_open_reader(path, &other)));
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 10)));
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 5);
  revledger_verdict v = {false, REVLEDGER_SCOPE_TOKEN, 77};

  REQUIRE(OK(revledger_testing_panic_in("revledger_check")));
  FAILS(revledger_check(r, &t, &v), REVLEDGER_INTERNAL);
  EXPECT(contains(revledger_last_error(), "panic inside revledger_check"));
  EXPECT(v.cutoff == 77); /* the out-parameter is untouched */
  EXPECT(poisoned(revledger_check(r, &t, &v)));
  EXPECT(poisoned(revledger_refresh(r)));
  revledger_statistics st;
  EXPECT(poisoned(revledger_stats(r, 0, &st)));
  int64_t heard = 0;
  uint32_t degraded = 0;
  EXPECT(poisoned(revledger_freshness_state(r, &heard, &degraded)));
  /* Other handles on the same ledger are unaffected. */
  EXPECT_REVOKED(other, &t, REVLEDGER_SCOPE_SUBJECT, 10);
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_SUBJECT, 10);
  revledger_close(r); /* a poisoned handle still closes */
  revledger_close(other);
  revledger_close(w);
}

static void a_poisoned_writer_refuses_writes_and_closes_releasing_its_lock(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 10)));
  REQUIRE(OK(revledger_sync(w)));
  REQUIRE(OK(revledger_testing_panic_in("revledger_revoke_batch")));
  revledger_rule rule = {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("mike"), 10};
  FAILS(revledger_revoke_batch(w, &rule, 1), REVLEDGER_INTERNAL);
  EXPECT(poisoned(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("mike"), 10)));
  EXPECT(poisoned(revledger_sync(w)));
  EXPECT(poisoned(revledger_compact(w, 0)));
  EXPECT(poisoned(revledger_wait_background(w)));
  revledger_close(w);
  /* The lock is released; the ledger holds what was committed before. */
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 5);
  revledger_token mike = tok("acme", "mike", NULL, NULL, NULL, NULL, NULL, 5);
  EXPECT_REVOKED(w, &john, REVLEDGER_SCOPE_SUBJECT, 10);
  EXPECT_VALID(w, &mike);
  revledger_close(w);
}

static void a_panic_in_close_still_frees_the_handle(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 10)));
  REQUIRE(OK(revledger_testing_panic_in("revledger_close")));
  revledger_close(w); /* valgrind's leak check sees it freed */
  EXPECT(contains(revledger_last_error(), "panic inside revledger_close"));
  REQUIRE(OK(revledger_open_writer(path, 3600, &w))); /* not LOCKED */
  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 5);
  EXPECT_REVOKED(w, &john, REVLEDGER_SCOPE_SUBJECT, 10);
  revledger_close(w);
}

static void a_panic_in_check_jwt_poisons_the_ledger_and_the_mapping(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  revledger_claims *claims = NULL, *fresh = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  REQUIRE(OK(revledger_claims_new("generic", &claims)));
  REQUIRE(OK(revledger_claims_new("generic", &fresh)));
  /* {"alg":"none"}.{"sub":"john","iat":5}. */
  const char *jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJqb2huIiwiaWF0Ijo1fQ.";
  revledger_verdict v;
  REQUIRE(OK(revledger_check_jwt(w, fresh, B(jwt), &v)));
  REQUIRE(OK(revledger_testing_panic_in("revledger_check_jwt")));
  FAILS(revledger_check_jwt(w, claims, B(jwt), &v), REVLEDGER_INTERNAL);
  EXPECT(poisoned(revledger_check_jwt(w, fresh, B(jwt), &v)));
  EXPECT(poisoned(revledger_check_jwt(r, claims, B(jwt), &v)));
  EXPECT(OK(revledger_check_jwt(r, fresh, B(jwt), &v)));
  revledger_claims_free(claims);
  revledger_claims_free(fresh);
  revledger_close(r);
  revledger_close(w);
}

static void functions_without_a_status_return_their_fallback(void) {
  REQUIRE(OK(revledger_testing_panic_in("revledger_last_error")));
  EXPECT(contains(revledger_last_error(), "revledger_last_error failed"));
  EXPECT(contains(revledger_last_error(), "panic inside revledger_last_error"));

  REQUIRE(OK(revledger_testing_panic_in("revledger_status_name")));
  EXPECT(strcmp(revledger_status_name(REVLEDGER_OK), "unknown status") == 0);
  EXPECT(strcmp(revledger_status_name(REVLEDGER_OK), "REVLEDGER_OK") == 0);

  REQUIRE(OK(revledger_testing_panic_in("revledger_version")));
  EXPECT(strcmp(revledger_version(), REVLEDGER_VERSION_STRING) == 0);

  REQUIRE(OK(revledger_testing_panic_in("revledger_writer_options_init")));
  revledger_writer_options o;
  memset(&o, 0, sizeof o);
  revledger_writer_options_init(&o);
  EXPECT(o.struct_size == 0); /* untouched by the call that panicked */
  EXPECT(contains(revledger_last_error(), "panic inside revledger_writer_options_init"));
  revledger_writer_options_init(&o);
  EXPECT(o.struct_size == sizeof o);

  REQUIRE(OK(revledger_testing_panic_in("revledger_claims_new")));
  revledger_claims *c = NULL;
  FAILS(revledger_claims_new("generic", &c), REVLEDGER_INTERNAL);
  EXPECT(c == NULL);

  FAILS(revledger_testing_panic_in("no_such_function"), REVLEDGER_INVALID_ARGUMENT);
  REQUIRE(OK(revledger_testing_panic_in("revledger_version")));
  REQUIRE(OK(revledger_testing_panic_in(NULL))); /* disarmed: nothing panics */
  EXPECT(strcmp(revledger_version(), REVLEDGER_VERSION_STRING) == 0);
}

int main(void) {
  RUN(a_panic_in_check_poisons_that_handle_only);
  RUN(a_poisoned_writer_refuses_writes_and_closes_releasing_its_lock);
  RUN(a_panic_in_close_still_frees_the_handle);
  RUN(a_panic_in_check_jwt_poisons_the_ledger_and_the_mapping);
  RUN(functions_without_a_status_return_their_fallback);
  return h_finish();
}
