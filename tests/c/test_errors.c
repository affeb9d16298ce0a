/* Bad input at the C ABI: every misuse gives its documented status, a non-empty
 * revledger_last_error(), leaves out-parameters untouched and changes nothing. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#define SENTINEL ((revledger *)(uintptr_t)0x5EED)

static const revledger_scope BAD_SCOPES[] = {(revledger_scope)7, (revledger_scope)1000,
                                             (revledger_scope)0xFFFFFFFFu};

static uint64_t rule_records(const revledger *h) {
  revledger_statistics st;
  memset(&st, 0, sizeof st);
  if (!OK(revledger_stats(h, 0, &st))) return UINT64_MAX;
  return st.rule_records;
}

static bool write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return false;
  bool ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

/* Reads at most `cap` bytes of the file; returns the count or -1. */
static long read_file(const char *path, void *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return (long)n;
}

/* A writer and a reader on a fresh ledger, for the tests below. */
static bool open_pair(revledger **w, revledger **r) {
  char path[256];
  h_path(path, sizeof path, "l");
  *w = NULL;
  *r = NULL;
  return OK(revledger_open_writer(path, 3600, w)) && OK(revledger_open_reader(path, r));
}

static void null_handle_is_invalid_argument(void) {
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  revledger_rule rule = {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5};
  revledger_statistics st;
  memset(&st, 0x5A, sizeof st);
  int64_t cutoff = 42;
  FAILS(revledger_revoke(NULL, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke_now(NULL, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), &cutoff),
        REVLEDGER_INVALID_ARGUMENT);
  EXPECT(cutoff == 42);
  FAILS(revledger_revoke_batch(NULL, &rule, 1), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_sync(NULL), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check(NULL, &t, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_TOKEN && v.cutoff == 77);
  FAILS(revledger_refresh(NULL), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_compact(NULL, 0), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_stats(NULL, 0, &st), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(st.rule_records == 0x5A5A5A5A5A5A5A5Aull);
}

static void null_out_pointers_are_invalid_argument(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  FAILS(revledger_open_writer(path, 3600, NULL), REVLEDGER_INVALID_ARGUMENT);
  /* Refused before anything was created: a reader finds no file. */
  revledger *r = SENTINEL;
  FAILS(revledger_open_reader(path, &r), REVLEDGER_IO);
  EXPECT(r == SENTINEL);

  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  FAILS(revledger_open_reader(path, NULL), REVLEDGER_INVALID_ARGUMENT);
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  FAILS(revledger_check(w, &t, NULL), REVLEDGER_INVALID_ARGUMENT);
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  FAILS(revledger_check(w, NULL, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(v.revoked && v.cutoff == 77);
  FAILS(revledger_stats(w, 0, NULL), REVLEDGER_INVALID_ARGUMENT);
  /* revoke_now's cutoff_out is optional. */
  EXPECT(OK(revledger_revoke_now(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), NULL)));
  EXPECT(rule_records(w) == 1);
  revledger_close(w);
}

static void null_path_is_invalid_argument(void) {
  revledger *h = SENTINEL;
  FAILS(revledger_open_writer(NULL, 3600, &h), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(h == SENTINEL);
  FAILS(revledger_open_reader(NULL, &h), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(h == SENTINEL);
}

/* {NULL, len > 0} anywhere is refused; {NULL, 0} is the empty string. */
static void null_ptr_with_length_is_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  const revledger_bytes bad = {NULL, 3};
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, bad, B("john"), 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), bad, 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, bad, NONE, 5), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke_now(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), bad, NULL),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke_now(w, REVLEDGER_SCOPE_SUBJECT, bad, B("john"), NULL),
        REVLEDGER_INVALID_ARGUMENT);
  revledger_rule rule = {REVLEDGER_SCOPE_SUBJECT, bad, B("john"), 5};
  FAILS(revledger_revoke_batch(w, &rule, 1), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(rule_records(w) == 0);

  /* In a token: each field, and one role among several. */
  for (int field = 0; field < 6; field++) {
    revledger_bytes roles[3] = {B("a"), B("b"), B("c")};
    revledger_token t = tok("acme", "john", NULL, NULL, "spa", "sid", "jti", 1);
    t.roles = roles;
    t.roles_len = 3;
    switch (field) {
      case 0: t.tenant = bad; break;
      case 1: t.subject = bad; break;
      case 2: t.client = bad; break;
      case 3: t.session = bad; break;
      case 4: t.token_id = bad; break;
      case 5: roles[1] = bad; break;
    }
    revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
    FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
    EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_TOKEN && v.cutoff == 77);
  }
  /* The same with more roles than the ABI keeps on its stack. */
  revledger_bytes many[20];
  for (int i = 0; i < 20; i++) many[i] = B("role");
  many[19] = bad;
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  t.roles = many;
  t.roles_len = 20;
  revledger_verdict v;
  FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);

  /* {NULL, 0} is the empty string everywhere: a tenant rule with the empty tenant. */
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, NONE, NONE, 100)));
  revledger_token empty;
  memset(&empty, 0, sizeof empty);
  empty.issued_at = 99;
  EXPECT_REVOKED(r, &empty, REVLEDGER_SCOPE_TENANT, 100);
  revledger_close(r);
  revledger_close(w);
}

static void out_of_range_scope_is_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  for (size_t i = 0; i < sizeof BAD_SCOPES / sizeof BAD_SCOPES[0]; i++) {
    revledger_scope s = BAD_SCOPES[i];
    FAILS(revledger_revoke(w, s, B("acme"), B("john"), 5), REVLEDGER_INVALID_ARGUMENT);
    int64_t cutoff = 42;
    FAILS(revledger_revoke_now(w, s, B("acme"), B("john"), &cutoff),
          REVLEDGER_INVALID_ARGUMENT);
    EXPECT(cutoff == 42);
    revledger_rule rule = {s, B("acme"), B("john"), 5};
    FAILS(revledger_revoke_batch(w, &rule, 1), REVLEDGER_INVALID_ARGUMENT);
    /* The message names the value. */
    char want[32];
    snprintf(want, sizeof want, "%u", (unsigned)s);
    EXPECT(strstr(revledger_last_error(), want) != NULL);
  }
  EXPECT(rule_records(r) == 0);
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  EXPECT_VALID(r, &t);
  revledger_close(r);
  revledger_close(w);
}

/* A key of `len` 'x' bytes, len at most 4097: one past the limit of 4096. */
static revledger_bytes x_key(size_t len) {
  static uint8_t buf[4097];
  memset(buf, 'x', sizeof buf);
  revledger_bytes b = {buf, len <= sizeof buf ? len : sizeof buf};
  return b;
}

/* Keys are limited to 4096 bytes: 4096 is accepted, 4097 refused, on every field. */
static void over_long_keys_are_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  const revledger_bytes max = x_key(4096), over = x_key(4097);

  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), over, 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, over, B("john"), 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, over, NONE, 5), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke_now(w, REVLEDGER_SCOPE_ROLE, B("acme"), over, NULL),
        REVLEDGER_INVALID_ARGUMENT);
  revledger_rule rule = {REVLEDGER_SCOPE_CLIENT, B("acme"), over, 5};
  FAILS(revledger_revoke_batch(w, &rule, 1), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(rule_records(w) == 0);

  for (int field = 0; field < 6; field++) {
    revledger_bytes roles[2] = {B("a"), B("b")};
    revledger_token t = tok("acme", "john", NULL, NULL, "spa", "sid", "jti", 1);
    t.roles = roles;
    t.roles_len = 2;
    revledger_bytes *target[] = {&t.tenant, &t.subject, &t.client,
                                 &t.session, &t.token_id, &roles[1]};
    *target[field] = over;
    revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
    FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
    EXPECT(v.cutoff == 77);
    *target[field] = max;
    EXPECT_VALID(r, &t);
  }

  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, max, max, 5)));
  revledger_token t;
  memset(&t, 0, sizeof t);
  t.tenant = max;
  t.subject = max;
  t.issued_at = 4;
  EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 5);
  revledger_close(r);
  revledger_close(w);
}

static void bad_roles_are_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  t.roles = NULL;
  t.roles_len = 1;
  FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
  t.roles_len = SIZE_MAX;
  FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(v.cutoff == 77);

  /* At most 4096 roles. */
  revledger_bytes *roles = calloc(4097, sizeof *roles);
  REQUIRE(roles != NULL);
  for (size_t i = 0; i < 4097; i++) roles[i] = B("r");
  roles[4095] = B("boss");
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("boss"), 10)));
  t.roles = roles;
  t.roles_len = 4097;
  FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
  t.roles_len = 4096;
  EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_ROLE, 10);
  /* roles_len 0 ignores the pointer. */
  t.roles_len = 0;
  EXPECT_VALID(r, &t);
  free(roles);
  revledger_close(r);
  revledger_close(w);
}

/* A bad role is found wherever it sits: among the first 16 roles (kept on the stack)
 * and past them (on the heap), with a message that names it. */
static void a_bad_role_is_refused_at_any_position(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  const revledger_bytes over = x_key(4097), null_with_len = {NULL, 3};
  const size_t counts[] = {1, 16, 17, 40};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    const size_t n = counts[c];
    revledger_bytes *roles = calloc(n, sizeof *roles);
    REQUIRE(roles != NULL);
    for (size_t i = 0; i < n; i++) roles[i] = B("r");
    revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
    t.roles = roles;
    t.roles_len = n;
    EXPECT_VALID(r, &t);
    const size_t positions[] = {0, n / 2, n - 1};
    for (size_t p = 0; p < 3; p++) {
      revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
      roles[positions[p]] = over;
      FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
      EXPECT(strstr(revledger_last_error(), "role is 4097 bytes long") != NULL);
      roles[positions[p]] = null_with_len;
      FAILS(revledger_check(r, &t, &v), REVLEDGER_INVALID_ARGUMENT);
      EXPECT(strstr(revledger_last_error(), "role: ptr is NULL but len is 3") != NULL);
      EXPECT(v.cutoff == 77);
      roles[positions[p]] = B("r");
    }
    /* Still answered right after the refusals: a role rule revokes the token. */
    roles[n - 1] = B("boss");
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("boss"), 10 + (int64_t)c)));
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_ROLE, 10 + (int64_t)c);
    free(roles);
  }
  revledger_close(r);
  revledger_close(w);
}

/* Rules the ledger cannot hold: a key for global/tenant, no key for the others. */
static void misshapen_rules_are_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_GLOBAL, B("acme"), NONE, 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_GLOBAL, NONE, B("k"), 5),
        REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, B("acme"), B("k"), 5),
        REVLEDGER_INVALID_ARGUMENT);
  const revledger_scope keyed[] = {REVLEDGER_SCOPE_SUBJECT, REVLEDGER_SCOPE_ROLE,
                                   REVLEDGER_SCOPE_CLIENT, REVLEDGER_SCOPE_SESSION,
                                   REVLEDGER_SCOPE_TOKEN};
  for (size_t i = 0; i < 5; i++) {
    FAILS(revledger_revoke(w, keyed[i], B("acme"), NONE, 5), REVLEDGER_INVALID_ARGUMENT);
    FAILS(revledger_revoke(w, keyed[i], B("acme"), B(""), 5), REVLEDGER_INVALID_ARGUMENT);
  }
  EXPECT(rule_records(r) == 0);
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  EXPECT_VALID(r, &t);
  revledger_close(r);
  revledger_close(w);
}

/* Every write on a reader handle: READ_ONLY, and nothing written. */
static void writes_on_a_reader_are_read_only(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r));
  FAILS(revledger_revoke(r, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5),
        REVLEDGER_READ_ONLY);
  int64_t cutoff = 42;
  FAILS(revledger_revoke_now(r, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), &cutoff),
        REVLEDGER_READ_ONLY);
  EXPECT(cutoff == 42);
  revledger_rule rule = {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5};
  FAILS(revledger_revoke_batch(r, &rule, 1), REVLEDGER_READ_ONLY);
  FAILS(revledger_revoke_batch(r, NULL, 0), REVLEDGER_READ_ONLY); /* even with nothing */
  FAILS(revledger_sync(r), REVLEDGER_READ_ONLY);
  FAILS(revledger_compact(r, 0), REVLEDGER_READ_ONLY);
  EXPECT(rule_records(w) == 0);
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1);
  EXPECT_VALID(r, &t);
  EXPECT_VALID(w, &t);
  /* The reader still works for what it is for. */
  EXPECT(OK(revledger_refresh(r)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5)));
  EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 5);
  revledger_close(r);
  revledger_close(w);
}

/* Files that are not ledgers: INCOMPATIBLE, for readers and writers, and the file is
 * left as it was. */
static void non_ledger_files_are_incompatible(void) {
  static const char text[] = "this is not a revledger ledger, just some text\n";
  uint8_t big[4096];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7 + 3);
  struct {
    const char *name;
    const void *data;
    size_t len;
  } files[] = {
      {"text", text, sizeof text - 1},
      {"empty", "", 0},
      {"binary", big, sizeof big},
      {"short-magic", "REVLEDGR", 8},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[256];
    h_path(path, sizeof path, files[i].name);
    REQUIRE(write_file(path, files[i].data, files[i].len));
    revledger *h = SENTINEL;
    FAILS(revledger_open_reader(path, &h), REVLEDGER_INCOMPATIBLE);
    EXPECT(h == SENTINEL);
    FAILS(revledger_open_writer(path, 3600, &h), REVLEDGER_INCOMPATIBLE);
    EXPECT(h == SENTINEL);
    uint8_t after[8192];
    long n = read_file(path, after, sizeof after);
    EXPECT(n == (long)files[i].len);
    EXPECT(n >= 0 && memcmp(after, files[i].data, (size_t)n) == 0);
  }
}

static void missing_directory_is_io(void) {
  char path[256];
  h_path(path, sizeof path, "no-such-dir/sub/ledger");
  revledger *h = SENTINEL;
  FAILS(revledger_open_writer(path, 3600, &h), REVLEDGER_IO);
  EXPECT(h == SENTINEL);
  FAILS(revledger_open_reader(path, &h), REVLEDGER_IO);
  EXPECT(h == SENTINEL);
  /* A missing file in an existing directory: a reader cannot open it either. */
  h_path(path, sizeof path, "missing.ledger");
  FAILS(revledger_open_reader(path, &h), REVLEDGER_IO);
  EXPECT(h == SENTINEL);
  /* The message names the path. */
  EXPECT(strstr(revledger_last_error(), "missing.ledger") != NULL);
}

/* One writer per ledger: a second one gets LOCKED until the first closes (another
 * process: tests/c/test_processes.c). */
static void second_writer_is_locked(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *w2 = SENTINEL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  FAILS(revledger_open_writer(path, 3600, &w2), REVLEDGER_LOCKED);
  EXPECT(w2 == SENTINEL);
  FAILS(revledger_open_writer(path, 0, &w2), REVLEDGER_LOCKED);

  /* Readers are not writers: they open alongside. */
  revledger *r = NULL;
  EXPECT(OK(revledger_open_reader(path, &r)));
  revledger_close(r);

  revledger_close(w);
  w2 = NULL;
  EXPECT(OK(revledger_open_writer(path, 3600, &w2)));
  revledger_close(w2);
}

static void smaller_lifetime_on_reopen_is_invalid_argument(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 7200, &w)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 5)));
  revledger_close(w);

  w = SENTINEL;
  FAILS(revledger_open_writer(path, 3600, &w), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(w == SENTINEL);
  FAILS(revledger_open_writer(path, 7199, &w), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_open_writer(path, -1, &w), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(w == SENTINEL);
  /* The refused opens released the lock and changed nothing. */
  w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 7200, &w)));
  revledger_statistics st;
  REQUIRE(OK(revledger_stats(w, 0, &st)));
  EXPECT(st.max_token_lifetime == 7200);
  EXPECT(st.rule_records == 1);
  revledger_close(w);
  /* A negative lifetime is refused at creation too, without creating the file. */
  h_path(path, sizeof path, "new");
  w = SENTINEL;
  FAILS(revledger_open_writer(path, -5, &w), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(w == SENTINEL);
  struct stat sb;
  EXPECT(stat(path, &sb) != 0 && errno == ENOENT);
}

static void close_null_is_a_no_op(void) {
  revledger_close(NULL);
  revledger_close(NULL);
  /* And the library still works afterwards. */
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  revledger_close(w);
}

/* last_error is thread-local, and holds the newest failure's message. */
static void last_error_describes_the_latest_failure(void) {
  revledger *h = SENTINEL;
  FAILS(revledger_open_reader(NULL, &h), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(strstr(revledger_last_error(), "path") != NULL);
  char path[256];
  h_path(path, sizeof path, "absent");
  FAILS(revledger_open_reader(path, &h), REVLEDGER_IO);
  EXPECT(strstr(revledger_last_error(), "absent") != NULL);
  EXPECT(strstr(revledger_last_error(), "path is NULL") == NULL);
}

/* DESIGN.md §3, Time sanity: revledger_compact with a `now` in milliseconds would drop
 * every rule, and a token issued more than the leeway after the clock cannot be judged:
 * both are INVALID_ARGUMENT, and nothing changes; a rule that does revoke such a token
 * still answers. */
static void times_past_the_clock_are_invalid_argument(void) {
  revledger *w = NULL, *r = NULL;
  REQUIRE(open_pair(&w, &r));
  int64_t now = (int64_t)time(NULL);
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), now)));
  FAILS(revledger_compact(w, now * 1000), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(strstr(revledger_last_error(), "milliseconds") != NULL);
  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, now - 1);
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_SUBJECT, now);
  EXPECT(rule_records(w) == 1);

  revledger_token bruce = tok("acme", "bruce", NULL, NULL, NULL, NULL, NULL, now + 3 * 86400);
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  FAILS(revledger_check(r, &bruce, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(strstr(revledger_last_error(), "future") != NULL);
  EXPECT(v.revoked && v.cutoff == 77);
  FAILS(revledger_check(w, &bruce, &v), REVLEDGER_INVALID_ARGUMENT);
  /* A rule that revokes it decides: the tenant changed after that iat. */
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, B("acme"), NONE, now + 4 * 86400)));
  EXPECT_REVOKED(r, &bruce, REVLEDGER_SCOPE_TENANT, now + 4 * 86400);
  revledger_close(r);
  revledger_close(w);
}

int main(void) {
  RUN(null_handle_is_invalid_argument);
  RUN(null_out_pointers_are_invalid_argument);
  RUN(null_path_is_invalid_argument);
  RUN(null_ptr_with_length_is_invalid_argument);
  RUN(out_of_range_scope_is_invalid_argument);
  RUN(over_long_keys_are_invalid_argument);
  RUN(bad_roles_are_invalid_argument);
  RUN(a_bad_role_is_refused_at_any_position);
  RUN(misshapen_rules_are_invalid_argument);
  RUN(writes_on_a_reader_are_read_only);
  RUN(non_ledger_files_are_incompatible);
  RUN(missing_directory_is_io);
  RUN(second_writer_is_locked);
  RUN(smaller_lifetime_on_reopen_is_invalid_argument);
  RUN(close_null_is_a_no_op);
  RUN(last_error_describes_the_latest_failure);
  RUN(times_past_the_clock_are_invalid_argument);
  return h_finish();
}
