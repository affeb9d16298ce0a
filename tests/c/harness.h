/* A small assertion harness for the C tests of the revledger C ABI.
 *
 * Each test case is a `static void name(void)` function run by RUN(name). Inside one,
 * EXPECT(cond) records a failure and goes on; REQUIRE(cond) records it and returns from
 * the test. EXPECT may be used from any thread. Every test case gets a fresh temporary
 * directory (h_dir, made with mkdtemp under /tmp, removed after the case); h_path()
 * names a file in it. main() ends with `return h_finish();`, which prints the
 * machine-readable line `RESULT <passed> <failed>` that tests/c/run.sh adds up.
 */
#ifndef REVLEDGER_TEST_HARNESS_H
#define REVLEDGER_TEST_HARNESS_H

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include "revledger.h"

#include <ftw.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int h_case_failures;
static int h_passed;
static int h_failed;
static char h_dir[64];

static inline void h_fail(const char *file, int line, const char *what) {
  atomic_fetch_add(&h_case_failures, 1);
  if (line > 0)
    fprintf(stderr, "    %s:%d: failed: %s\n", file, line, what);
  else
    fprintf(stderr, "    %s: failed: %s\n", file, what);
}

#define EXPECT(cond)                                                                     \
  do {                                                                                   \
    if (!(cond)) h_fail(__FILE__, __LINE__, #cond);                                      \
  } while (0)

#define REQUIRE(cond)                                                                    \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      h_fail(__FILE__, __LINE__, #cond);                                                 \
      return;                                                                            \
    }                                                                                    \
  } while (0)

static inline const char *h_status(revledger_status s) {
  return revledger_status_name((uint32_t)s);
}

/* A call that must succeed. Evaluates to whether it did. */
static inline bool h_ok(revledger_status got, const char *file, int line, const char *call) {
  if (got == REVLEDGER_OK) return true;
  atomic_fetch_add(&h_case_failures, 1);
  fprintf(stderr, "    %s:%d: %s returned %s: %s\n", file, line, call, h_status(got),
          revledger_last_error());
  return false;
}
#define OK(call) h_ok((call), __FILE__, __LINE__, #call)

/* A call that must fail with `want` and leave a non-empty revledger_last_error(). */
static inline bool h_fails(revledger_status got, revledger_status want, const char *file,
                           int line, const char *call) {
  bool ok = true;
  if (got != want) {
    fprintf(stderr, "    %s:%d: %s returned %s, expected %s (last error: %s)\n", file, line,
            call, h_status(got), h_status(want),
            got == REVLEDGER_OK ? "-" : revledger_last_error());
    ok = false;
  } else {
    const char *msg = revledger_last_error();
    if (msg == NULL || msg[0] == '\0') {
      fprintf(stderr, "    %s:%d: %s failed with %s but revledger_last_error() is empty\n",
              file, line, call, h_status(got));
      ok = false;
    }
  }
  if (!ok) atomic_fetch_add(&h_case_failures, 1);
  return ok;
}
#define FAILS(call, want) h_fails((call), (want), __FILE__, __LINE__, #call)

static inline int h_rm_entry(const char *path, const struct stat *sb, int flag,
                             struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static inline void h_rmtree(const char *dir) {
  if (dir[0] != '\0') nftw(dir, h_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes "<h_dir>/<name>" into buf. */
static inline void h_path(char *buf, size_t size, const char *name) {
  int n = snprintf(buf, size, "%s/%s", h_dir, name);
  if (n < 0 || (size_t)n >= size) {
    fprintf(stderr, "path too long: %s/%s\n", h_dir, name);
    abort();
  }
}

/* Makes a fresh h_dir (mkdtemp under /tmp). */
static inline void h_dir_make(void) {
  strcpy(h_dir, "/tmp/revledger-c-XXXXXX");
  if (mkdtemp(h_dir) == NULL) {
    perror("mkdtemp");
    abort();
  }
}

/* Removes h_dir and everything in it. */
static inline void h_dir_remove(void) {
  h_rmtree(h_dir);
  h_dir[0] = '\0';
}

/* For test cases that are not functions of their own (one per vector case): begin with
 * h_case_begin(), record failures as usual, end with h_case_end(name). */
static inline void h_case_begin(void) { atomic_store(&h_case_failures, 0); }
static inline void h_case_end(const char *name) {
  if (atomic_load(&h_case_failures) == 0) {
    h_passed++;
    printf("ok   %s\n", name);
  } else {
    h_failed++;
    printf("FAIL %s\n", name);
  }
  fflush(stdout);
  fflush(stderr);
}

static inline void h_run(const char *name, void (*fn)(void)) {
  h_dir_make();
  h_case_begin();
  fn();
  h_dir_remove();
  h_case_end(name);
}
#define RUN(fn) h_run(#fn, fn)

static inline int h_finish(void) {
  printf("RESULT %d %d\n", h_passed, h_failed);
  fflush(stdout);
  return h_failed == 0 ? 0 : 1;
}

/* ---- building arguments -------------------------------------------------------- */

/* The bytes of a C string (without its NUL). */
static inline revledger_bytes B(const char *s) {
  revledger_bytes b = {(const uint8_t *)s, s == NULL ? 0 : strlen(s)};
  return b;
}

/* The empty byte string {NULL, 0}. */
#define NONE ((revledger_bytes){NULL, 0})

/* A token with up to 8 roles given as C strings (NULL-terminated list, may be NULL).
 * Roles are stored in `roles`, which must outlive the token. */
static inline revledger_token tok(const char *tenant, const char *subject, revledger_bytes *roles,
                                const char *const *role_names, const char *client,
                                const char *session, const char *jti, int64_t iat) {
  revledger_token t;
  memset(&t, 0, sizeof t);
  t.tenant = B(tenant);
  t.subject = B(subject);
  t.client = B(client);
  t.session = B(session);
  t.token_id = B(jti);
  size_t n = 0;
  if (role_names != NULL) {
    while (role_names[n] != NULL) {
      roles[n] = B(role_names[n]);
      n++;
    }
  }
  t.roles = n == 0 ? NULL : roles;
  t.roles_len = n;
  t.issued_at = iat;
  return t;
}

/* Checks `token` on `h` and compares the verdict. `revoked == false` ignores scope and
 * cutoff except that the ABI documents them as GLOBAL and 0, which is checked too. */
static inline bool h_verdict(const revledger *h, const revledger_token *token, bool revoked,
                             revledger_scope scope, int64_t cutoff, const char *file,
                             int line) {
  revledger_verdict v;
  memset(&v, 0xA5, sizeof v);
  revledger_status s = revledger_check(h, token, &v);
  if (s != REVLEDGER_OK) {
    atomic_fetch_add(&h_case_failures, 1);
    fprintf(stderr, "    %s:%d: revledger_check returned %s: %s\n", file, line, h_status(s),
            revledger_last_error());
    return false;
  }
  bool good = v.revoked == revoked;
  if (good && revoked) good = v.scope == scope && v.cutoff == cutoff;
  if (good && !revoked) good = v.scope == REVLEDGER_SCOPE_GLOBAL && v.cutoff == 0;
  if (!good) {
    atomic_fetch_add(&h_case_failures, 1);
    fprintf(stderr,
            "    %s:%d: verdict {revoked=%d scope=%u cutoff=%lld}, expected {revoked=%d "
            "scope=%u cutoff=%lld}\n",
            file, line, (int)v.revoked, (unsigned)v.scope, (long long)v.cutoff,
            (int)revoked, (unsigned)scope, (long long)cutoff);
  }
  return good;
}
#define EXPECT_VALID(h, tok)                                                             \
  h_verdict((h), (tok), false, REVLEDGER_SCOPE_GLOBAL, 0, __FILE__, __LINE__)
#define EXPECT_REVOKED(h, tok, scope, cutoff)                                            \
  h_verdict((h), (tok), true, (scope), (cutoff), __FILE__, __LINE__)

#endif /* REVLEDGER_TEST_HARNESS_H */
