/* Many threads checking on one handle while revokes run: every answer is consistent.
 *
 * A revoker thread revokes subjects one by one (subject k at cutoff BASE + k) and, after
 * each revoke returns, raises that subject's flag. Checker threads loop over every
 * subject on one shared handle and require, for each answer:
 *   - a subject whose flag was up before the check started is revoked (commit => next
 *     check sees it);
 *   - a revoked answer names exactly that rule (SUBJECT, BASE + k);
 *   - once a thread has seen a subject revoked, it stays revoked;
 *   - a token issued at the cutoff, and a subject never revoked, are always valid.
 * Checkers stop after a full pass begun once the revokers were done. No sleeps, no
 * timing: the threads interleave however the scheduler likes, and every interleaving
 * must satisfy the above. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <pthread.h>
#include <sched.h>

enum { SUBJECTS = 96, CHECKERS = 4, BASE = 100000, MAX_REVOKERS = 2 };

/* Set from REVLEDGER_TEST_YIELD (tests/c/run.sh sets it under valgrind, which runs one
 * thread at a time): checkers yield after each pass. Not synchronisation: without it the
 * spinning checkers took most of valgrind's turns and starved the revoking thread (14
 * minutes for this file instead of 4 seconds). Native runs spin freely. */
static bool yield_each_pass;

typedef struct {
  revledger *writer;       /* revokes go here */
  const revledger *checks; /* checks go here (the writer itself, or a reader) */
  char names[SUBJECTS][16];
  atomic_bool returned[SUBJECTS]; /* revoke of subject k has returned */
  atomic_int revokers_left;
  atomic_long checks_done;
  int revokers;
} shared;

typedef struct {
  shared *s;
  int id;
} arg;

static void *revoker(void *p) {
  arg *a = p;
  shared *s = a->s;
  /* With several revokers, each takes every revokers-th subject. */
  for (int k = a->id; k < SUBJECTS; k += s->revokers) {
    revledger_status st =
        revledger_revoke(s->writer, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(s->names[k]), BASE + k);
    if (st != REVLEDGER_OK) {
      h_fail(__FILE__, __LINE__, "revoke in the revoker thread");
      fprintf(stderr, "      %s: %s\n", h_status(st), revledger_last_error());
    }
    atomic_store_explicit(&s->returned[k], true, memory_order_release);
  }
  atomic_fetch_sub(&s->revokers_left, 1);
  return NULL;
}

static bool check_one(const shared *s, const char *subject, int64_t iat, revledger_verdict *v) {
  revledger_token t = tok("acme", subject, NULL, NULL, NULL, NULL, NULL, iat);
  revledger_status st = revledger_check(s->checks, &t, v);
  if (st != REVLEDGER_OK) {
    h_fail(__FILE__, __LINE__, "revledger_check in a checker thread");
    fprintf(stderr, "      %s: %s\n", h_status(st), revledger_last_error());
    return false;
  }
  return true;
}

static void *checker(void *p) {
  arg *a = p;
  shared *s = a->s;
  bool seen[SUBJECTS] = {false};
  long checks = 0;
  int reported = 0; /* at most a few messages per thread */
  for (;;) {
    bool last_pass = atomic_load(&s->revokers_left) == 0;
    for (int i = 0; i < SUBJECTS; i++) {
      int k = (i + a->id * (SUBJECTS / CHECKERS)) % SUBJECTS;
      bool committed = atomic_load_explicit(&s->returned[k], memory_order_acquire);
      revledger_verdict v = {false, REVLEDGER_SCOPE_GLOBAL, 0};
      if (!check_one(s, s->names[k], 50, &v)) return NULL;
      checks++;
      bool bad = false;
      if (v.revoked) {
        bad = v.scope != REVLEDGER_SCOPE_SUBJECT || v.cutoff != BASE + k;
        seen[k] = true;
      } else {
        bad = committed || seen[k];
      }
      if (bad && reported++ < 5) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "subject %d: revoked=%d scope=%u cutoff=%lld (committed=%d, seen before=%d)",
                 k, (int)v.revoked, (unsigned)v.scope, (long long)v.cutoff, (int)committed,
                 (int)seen[k]);
        h_fail(__FILE__, __LINE__, msg);
      } else if (bad) {
        atomic_fetch_add(&h_case_failures, 1);
      }
      /* Issued at the cutoff: never revoked by that rule. */
      if (k % 8 == 0) {
        if (!check_one(s, s->names[k], BASE + k, &v)) return NULL;
        checks++;
        if (v.revoked) h_fail(__FILE__, __LINE__, "token issued at the cutoff is revoked");
      }
    }
    revledger_verdict v;
    if (!check_one(s, "bystander", 50, &v)) return NULL;
    if (v.revoked) h_fail(__FILE__, __LINE__, "a subject never revoked is revoked");
    checks++;
    /* refresh may run alongside checks, from any thread. */
    if (a->id == 0 && revledger_refresh(s->checks) != REVLEDGER_OK)
      h_fail(__FILE__, __LINE__, "revledger_refresh in a checker thread");
    if (last_pass) break;
    if (yield_each_pass) sched_yield();
  }
  /* The last pass began after every revoke returned: everything was revoked in it. */
  for (int k = 0; k < SUBJECTS; k++)
    if (!seen[k]) {
      h_fail(__FILE__, __LINE__, "a subject revoked before the last pass was not seen");
      break;
    }
  atomic_fetch_add(&s->checks_done, checks);
  return NULL;
}

/* Runs `revokers` revoker threads on `writer` and CHECKERS checker threads on `checks`. */
static void run_threads(revledger *writer, const revledger *checks, int revokers) {
  static shared s; /* large; zeroed below */
  memset(&s, 0, sizeof s);
  s.writer = writer;
  s.checks = checks;
  s.revokers = revokers;
  for (int k = 0; k < SUBJECTS; k++) {
    snprintf(s.names[k], sizeof s.names[k], "user-%d", k);
    atomic_init(&s.returned[k], false);
  }
  atomic_init(&s.revokers_left, revokers);
  atomic_init(&s.checks_done, 0);

  pthread_t threads[CHECKERS + MAX_REVOKERS];
  arg args[CHECKERS + MAX_REVOKERS];
  int started = 0;
  for (int i = 0; i < CHECKERS; i++) {
    args[started] = (arg){&s, i};
    if (pthread_create(&threads[started], NULL, checker, &args[started]) != 0) break;
    started++;
  }
  int checkers_started = started;
  for (int i = 0; i < revokers && checkers_started == CHECKERS; i++) {
    args[started] = (arg){&s, i};
    if (pthread_create(&threads[started], NULL, revoker, &args[started]) != 0) break;
    started++;
  }
  EXPECT(started == CHECKERS + revokers);
  if (started != CHECKERS + revokers) {
    /* Let waiting checkers finish rather than spin forever. */
    atomic_store(&s.revokers_left, 0);
  }
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  EXPECT(atomic_load(&s.checks_done) >= (long)CHECKERS * SUBJECTS);
  printf("     (%ld checks by %d threads alongside %d revokes by %d)\n",
         atomic_load(&s.checks_done), CHECKERS, SUBJECTS, revokers);
}

static uint64_t rule_records(const revledger *h) {
  revledger_statistics st;
  memset(&st, 0, sizeof st);
  if (!OK(revledger_stats(h, 0, &st))) return UINT64_MAX;
  return st.rule_records;
}

/* Every subject revoked, seen by a fresh reader after the writer closed. */
static void expect_all_revoked(const char *path) {
  revledger *r = NULL;
  if (!OK(revledger_open_reader(path, &r))) return;
  EXPECT(rule_records(r) == SUBJECTS);
  char name[16];
  for (int k = 0; k < SUBJECTS; k++) {
    snprintf(name, sizeof name, "user-%d", k);
    revledger_token t = tok("acme", name, NULL, NULL, NULL, NULL, NULL, 50);
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, BASE + k);
  }
  revledger_close(r);
}

/* Checks and revokes on the same (writer) handle. */
static void checkers_on_the_writer_handle_while_one_thread_revokes(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  run_threads(w, w, 1);
  EXPECT(rule_records(w) == SUBJECTS);
  revledger_close(w);
  expect_all_revoked(path);
}

/* Checks on a reader handle of the same process while a thread revokes on the writer. */
static void checkers_on_a_reader_handle_while_one_thread_revokes(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  run_threads(w, r, 1);
  EXPECT(rule_records(r) == SUBJECTS);
  revledger_close(r);
  revledger_close(w);
  expect_all_revoked(path);
}

/* Two threads revoking on one handle serialise: no record is lost or torn. */
static void two_revoking_threads_lose_nothing(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  run_threads(w, w, 2);
  EXPECT(rule_records(w) == SUBJECTS);
  revledger_close(w);
  expect_all_revoked(path);
}

/* revledger_last_error is per thread: a failure on one thread does not show on another. */
static void *fail_in_thread(void *p) {
  (void)p;
  revledger *h = NULL;
  if (revledger_open_reader(NULL, &h) != REVLEDGER_INVALID_ARGUMENT)
    h_fail(__FILE__, __LINE__, "open_reader(NULL) in a thread");
  if (strstr(revledger_last_error(), "path") == NULL)
    h_fail(__FILE__, __LINE__, "the thread's own last error");
  return NULL;
}

static void last_error_is_thread_local(void) {
  char path[256];
  h_path(path, sizeof path, "missing.ledger");
  revledger *h = NULL;
  FAILS(revledger_open_reader(path, &h), REVLEDGER_IO);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, fail_in_thread, NULL) == 0);
  pthread_join(t, NULL);
  EXPECT(strstr(revledger_last_error(), "missing.ledger") != NULL);
}


/* Checks stay right while the writer compacts the ledger again and again: a reader
 * handle follows each new file, and no answer for a token that has not expired changes
 * during a swap. Rules "dead-*" (cutoff 100) are dropped by compaction at NOW; rules
 * "live-*" are kept; each round adds one rule "new-<round>" before compacting. */
enum { LIVE = 24, ROUNDS = 6, NOW = 5000 };

typedef struct {
  const revledger *reader;
  atomic_int rounds_returned; /* rounds whose revoke has returned */
  atomic_bool done;
  atomic_long checks;
} compaction_shared;

static void *compaction_checker(void *p) {
  compaction_shared *s = p;
  char name[32];
  long checks = 0;
  int reported = 0;
  for (;;) {
    bool last_pass = atomic_load(&s->done);
    int returned = atomic_load(&s->rounds_returned);
    for (int k = 0; k < LIVE; k++) {
      snprintf(name, sizeof name, "live-%d", k);
      revledger_token t = tok("acme", name, NULL, NULL, NULL, NULL, NULL, NOW);
      revledger_verdict v = {false, REVLEDGER_SCOPE_GLOBAL, 0};
      revledger_status st = revledger_check(s->reader, &t, &v);
      checks++;
      if (st != REVLEDGER_OK || !v.revoked || v.scope != REVLEDGER_SCOPE_SUBJECT ||
          v.cutoff != BASE + k) {
        if (reported++ < 5) {
          char msg[200];
          snprintf(msg, sizeof msg, "%s during compaction: status %s revoked=%d cutoff=%lld",
                   name, h_status(st), (int)v.revoked, (long long)v.cutoff);
          h_fail(__FILE__, __LINE__, msg);
        } else {
          atomic_fetch_add(&h_case_failures, 1);
        }
      }
      t.issued_at = BASE + k;
      st = revledger_check(s->reader, &t, &v);
      checks++;
      if (st != REVLEDGER_OK || v.revoked) {
        if (reported++ < 5) h_fail(__FILE__, __LINE__, "token issued at a live cutoff");
        else atomic_fetch_add(&h_case_failures, 1);
      }
    }
    for (int r = 0; r < returned; r++) {
      snprintf(name, sizeof name, "new-%d", r);
      revledger_token t = tok("acme", name, NULL, NULL, NULL, NULL, NULL, NOW);
      revledger_verdict v = {false, REVLEDGER_SCOPE_GLOBAL, 0};
      revledger_status st = revledger_check(s->reader, &t, &v);
      checks++;
      if (st != REVLEDGER_OK || !v.revoked || v.cutoff != 2 * BASE + r) {
        if (reported++ < 5) h_fail(__FILE__, __LINE__, "a rule added between compactions");
        else atomic_fetch_add(&h_case_failures, 1);
      }
    }
    if (last_pass) break;
    if (yield_each_pass) sched_yield();
  }
  atomic_fetch_add(&s->checks, checks);
  return NULL;
}

static void checks_stay_right_while_the_writer_compacts(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  char name[32];
  for (int k = 0; k < LIVE; k++) {
    snprintf(name, sizeof name, "live-%d", k);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(name), BASE + k)));
    snprintf(name, sizeof name, "dead-%d", k);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(name), 100)));
  }
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_statistics st;
  REQUIRE(OK(revledger_stats(r, NOW, &st)));
  EXPECT(st.live_keys == 2 * LIVE);
  EXPECT(st.expired_keys == LIVE); /* 100 + 3600 + leeway < NOW */

  static compaction_shared s;
  memset(&s, 0, sizeof s);
  s.reader = r;
  atomic_init(&s.rounds_returned, 0);
  atomic_init(&s.done, false);
  atomic_init(&s.checks, 0);
  pthread_t threads[CHECKERS];
  int started = 0;
  while (started < CHECKERS &&
         pthread_create(&threads[started], NULL, compaction_checker, &s) == 0)
    started++;
  EXPECT(started == CHECKERS);
  for (int round = 0; round < ROUNDS; round++) {
    snprintf(name, sizeof name, "new-%d", round);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(name), 2 * BASE + round)));
    atomic_store(&s.rounds_returned, round + 1);
    EXPECT(OK(revledger_compact(w, NOW)));
  }
  atomic_store(&s.done, true);
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  EXPECT(atomic_load(&s.checks) >= (long)CHECKERS * LIVE * 2);

  /* The reader now reads the last compacted file: only live rules are left. */
  REQUIRE(OK(revledger_stats(r, NOW, &st)));
  EXPECT(st.live_keys == LIVE + ROUNDS);
  EXPECT(st.rule_records == LIVE + ROUNDS);
  EXPECT(st.expired_keys == 0);
  revledger_close(r);
  revledger_close(w);
}

int main(void) {
  yield_each_pass = getenv("REVLEDGER_TEST_YIELD") != NULL;
  RUN(checkers_on_the_writer_handle_while_one_thread_revokes);
  RUN(checkers_on_a_reader_handle_while_one_thread_revokes);
  RUN(two_revoking_threads_lose_nothing);
  RUN(checks_stay_right_while_the_writer_compacts);
  RUN(last_error_is_thread_local);
  return h_finish();
}
