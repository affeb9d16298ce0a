/* The C ABI doing its job: the DESIGN.md §1 scenario, every scope, revoke_now,
 * revoke_batch, sync, compaction, stats, reopening. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <sys/stat.h>
#include <time.h>

static int64_t realtime_floor(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec;
}

static uint64_t rule_records(const revledger *h) {
  revledger_statistics st;
  memset(&st, 0, sizeof st);
  if (!OK(revledger_stats(h, 0, &st))) return UINT64_MAX;
  return st.rule_records;
}

/* §1: super_admin's permissions change at T. John and Mike hold it, Bruce does not:
 * only John's and Mike's tokens go; Bruce stays valid; John's refreshed token is valid. */
static void design_scenario_super_admin_changes(void) {
  char path[256];
  h_path(path, sizeof path, "acme.ledger");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));

  const int64_t T = 1700000000;
  revledger_bytes rb[8];
  const char *john_roles[] = {"super_admin", "billing", NULL};
  const char *mike_roles[] = {"viewer", "super_admin", NULL};
  const char *bruce_roles[] = {"billing", "viewer", NULL};
  revledger_token john = tok("acme", "john", rb, john_roles, "spa", "sid-j", "jti-j", T - 60);
  revledger_bytes rb2[8];
  revledger_token mike = tok("acme", "mike", rb2, mike_roles, "spa", "sid-m", "jti-m", T - 1);
  revledger_bytes rb3[8];
  revledger_token bruce = tok("acme", "bruce", rb3, bruce_roles, "spa", "sid-b", "jti-b", T - 60);

  /* Before the change everyone is valid, on the writer and on the reader. */
  EXPECT_VALID(w, &john);
  EXPECT_VALID(r, &mike);
  EXPECT_VALID(r, &bruce);

  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("super_admin"), T)));

  const revledger *handles[] = {w, r};
  for (size_t i = 0; i < 2; i++) {
    EXPECT_REVOKED(handles[i], &john, REVLEDGER_SCOPE_ROLE, T);
    EXPECT_REVOKED(handles[i], &mike, REVLEDGER_SCOPE_ROLE, T);
    EXPECT_VALID(handles[i], &bruce);
  }

  /* The client refreshes: a token issued at T (or later) with the same roles is valid. */
  revledger_bytes rb4[8];
  revledger_token john_refreshed = tok("acme", "john", rb4, john_roles, "spa", "sid-j", "jti-j2", T);
  EXPECT_VALID(r, &john_refreshed);

  /* super_admin in another tenant is another key. */
  revledger_bytes rb5[8];
  revledger_token other = tok("globex", "john", rb5, john_roles, "spa", NULL, NULL, T - 60);
  EXPECT_VALID(r, &other);

  /* A fresh reader gives the same answers. */
  revledger *r2 = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r2)));
  EXPECT_REVOKED(r2, &john, REVLEDGER_SCOPE_ROLE, T);
  EXPECT_REVOKED(r2, &mike, REVLEDGER_SCOPE_ROLE, T);
  EXPECT_VALID(r2, &bruce);
  revledger_close(r2);
  revledger_close(r);
  revledger_close(w);
}

struct scope_case {
  revledger_scope scope;
  const char *tenant, *key;
  int64_t at;
};

/* Each scope on its own fresh ledger: the matching token is revoked and named by that
 * scope; near misses (other tenant, other key, iat at the cutoff) are valid. */
static void every_scope_revokes_its_tokens_only(void) {
  const struct scope_case cases[] = {
      {REVLEDGER_SCOPE_GLOBAL, "", "", 1000},
      {REVLEDGER_SCOPE_TENANT, "acme", "", 1000},
      {REVLEDGER_SCOPE_SUBJECT, "acme", "john", 1000},
      {REVLEDGER_SCOPE_ROLE, "acme", "admin", 1000},
      {REVLEDGER_SCOPE_CLIENT, "acme", "spa", 1000},
      {REVLEDGER_SCOPE_SESSION, "acme", "sid-1", 1000},
      {REVLEDGER_SCOPE_TOKEN, "acme", "jti-1", 5000},
  };
  const char *roles[] = {"viewer", "admin", NULL};
  const char *other_roles[] = {"viewer", "admin2", NULL};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct scope_case *c = &cases[i];
    char path[256], name[32];
    snprintf(name, sizeof name, "scope-%zu.ledger", i);
    h_path(path, sizeof path, name);
    revledger *w = NULL, *r = NULL;
    REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
    REQUIRE(OK(revledger_open_reader(path, &r)));
    EXPECT(OK(revledger_revoke(w, c->scope, B(c->tenant), B(c->key), c->at)));

    revledger_bytes rb[8];
    /* The full token matches every kind of rule. */
    revledger_token hit = tok("acme", "john", rb, roles, "spa", "sid-1", "jti-1", 999);
    EXPECT_REVOKED(r, &hit, c->scope, c->at);
    EXPECT_REVOKED(w, &hit, c->scope, c->at);

    /* At the cutoff: valid, except for a token rule, which ignores iat. */
    revledger_bytes rb2[8];
    revledger_token at_cutoff = tok("acme", "john", rb2, roles, "spa", "sid-1", "jti-1", 1000);
    if (c->scope == REVLEDGER_SCOPE_TOKEN) {
      EXPECT_REVOKED(r, &at_cutoff, c->scope, c->at);
      revledger_token late = at_cutoff;
      late.issued_at = INT64_MAX;
      EXPECT_REVOKED(r, &late, c->scope, c->at);
    } else {
      EXPECT_VALID(r, &at_cutoff);
    }

    /* Another tenant: only a global rule reaches it. */
    revledger_bytes rb3[8];
    revledger_token other_tenant = tok("globex", "john", rb3, roles, "spa", "sid-1", "jti-1", 999);
    if (c->scope == REVLEDGER_SCOPE_GLOBAL)
      EXPECT_REVOKED(r, &other_tenant, c->scope, c->at);
    else
      EXPECT_VALID(r, &other_tenant);

    /* Same tenant, every key different: only global and tenant rules reach it. */
    revledger_bytes rb4[8];
    revledger_token other_keys =
        tok("acme", "john2", rb4, other_roles, "spa2", "sid-2", "jti-2", 999);
    if (c->scope == REVLEDGER_SCOPE_GLOBAL || c->scope == REVLEDGER_SCOPE_TENANT)
      EXPECT_REVOKED(r, &other_keys, c->scope, c->at);
    else
      EXPECT_VALID(r, &other_keys);

    /* Absent optional claims never match a keyed rule. */
    revledger_token bare = tok("acme", "", NULL, NULL, NULL, NULL, NULL, 999);
    if (c->scope == REVLEDGER_SCOPE_GLOBAL || c->scope == REVLEDGER_SCOPE_TENANT)
      EXPECT_REVOKED(r, &bare, c->scope, c->at);
    else
      EXPECT_VALID(r, &bare);

    revledger_close(r);
    revledger_close(w);
  }
}

/* A reader opened before the revoke sees it on its next check, without reopening. */
static void reader_sees_each_commit_on_its_next_check(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  char sub[32];
  for (int i = 0; i < 200; i++) {
    snprintf(sub, sizeof sub, "user-%d", i);
    revledger_token t = tok("acme", sub, NULL, NULL, NULL, NULL, NULL, 500);
    EXPECT_VALID(r, &t);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(sub), 1000 + i)));
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 1000 + i);
  }
  /* Every earlier one is still there (the index grew past its first table). */
  for (int i = 0; i < 200; i++) {
    snprintf(sub, sizeof sub, "user-%d", i);
    revledger_token t = tok("acme", sub, NULL, NULL, NULL, NULL, NULL, 500);
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 1000 + i);
  }
  revledger_token t = tok("acme", "user-200", NULL, NULL, NULL, NULL, NULL, 500);
  EXPECT_VALID(r, &t);
  revledger_close(r);
  revledger_close(w);
}

/* The effective cutoff of a key is the maximum of its records; it is never lowered. */
static void cutoff_is_the_maximum_and_never_lowered(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  revledger_token t = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 1500);
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 2000)));
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_SUBJECT, 2000);
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 1000)));
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_SUBJECT, 2000);
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 3000)));
  t.issued_at = 2500;
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_SUBJECT, 3000);
  revledger_close(w);
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 3000);
  EXPECT(rule_records(r) == 3);
  revledger_close(r);
}

/* revoke_now: the cutoff is the current second rounded up, so a token issued in the
 * same second is revoked and one issued at the cutoff is valid. */
static void revoke_now_rounds_up_to_the_next_second(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  int64_t before = realtime_floor();
  int64_t cutoff = 0;
  REQUIRE(OK(revledger_revoke_now(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("ops"), &cutoff)));
  int64_t after = realtime_floor();
  EXPECT(cutoff >= before + 1);
  EXPECT(cutoff <= after + 1);

  const char *roles[] = {"ops", NULL};
  revledger_bytes rb[4];
  revledger_token same_second = tok("acme", "john", rb, roles, NULL, NULL, NULL, cutoff - 1);
  EXPECT_REVOKED(w, &same_second, REVLEDGER_SCOPE_ROLE, cutoff);
  revledger_token refreshed = same_second;
  refreshed.issued_at = cutoff;
  EXPECT_VALID(w, &refreshed);

  /* cutoff_out may be NULL. */
  EXPECT(OK(revledger_revoke_now(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("mike"), NULL)));
  revledger_token mike = tok("acme", "mike", NULL, NULL, NULL, NULL, NULL, before);
  revledger_verdict v;
  REQUIRE(OK(revledger_check(w, &mike, &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_SUBJECT && v.cutoff > before);

  /* A token rule takes the token's exp, not "now": refused, and *cutoff_out untouched. */
  int64_t untouched = 42;
  FAILS(revledger_revoke_now(w, REVLEDGER_SCOPE_TOKEN, B("acme"), B("jti"), &untouched),
        REVLEDGER_INVALID_ARGUMENT);
  EXPECT(untouched == 42);
  EXPECT(rule_records(w) == 2);
  revledger_close(w);
}

/* revoke_batch commits every rule, in one append, visible to a reader. */
static void revoke_batch_commits_every_rule(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_rule rules[] = {
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 100},
      {REVLEDGER_SCOPE_ROLE, B("acme"), B("admin"), 200},
      {REVLEDGER_SCOPE_TOKEN, B("acme"), B("jti-9"), 9999},
      {REVLEDGER_SCOPE_TENANT, B("globex"), NONE, 300},
      {REVLEDGER_SCOPE_GLOBAL, NONE, NONE, 50},
  };
  REQUIRE(OK(revledger_revoke_batch(w, rules, sizeof rules / sizeof rules[0])));
  EXPECT(rule_records(r) == 5);

  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 99);
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_SUBJECT, 100);
  const char *roles[] = {"admin", NULL};
  revledger_bytes rb[2];
  revledger_token admin = tok("acme", "mike", rb, roles, NULL, NULL, NULL, 199);
  EXPECT_REVOKED(r, &admin, REVLEDGER_SCOPE_ROLE, 200);
  revledger_token jti = tok("acme", "mike", NULL, NULL, NULL, NULL, "jti-9", 100000);
  EXPECT_REVOKED(r, &jti, REVLEDGER_SCOPE_TOKEN, 9999);
  revledger_token globex = tok("globex", "x", NULL, NULL, NULL, NULL, NULL, 299);
  EXPECT_REVOKED(r, &globex, REVLEDGER_SCOPE_TENANT, 300);
  revledger_token anyone = tok("initech", "x", NULL, NULL, NULL, NULL, NULL, 49);
  EXPECT_REVOKED(r, &anyone, REVLEDGER_SCOPE_GLOBAL, 50);
  anyone.issued_at = 50;
  EXPECT_VALID(r, &anyone);

  /* An empty batch is a no-op; rules may then be NULL. */
  EXPECT(OK(revledger_revoke_batch(w, NULL, 0)));
  EXPECT(OK(revledger_revoke_batch(w, rules, 0)));
  EXPECT(rule_records(r) == 5);
  revledger_close(r);
  revledger_close(w);
}

/* One bad rule in a batch refuses the whole batch: nothing is committed. */
static void revoke_batch_is_all_or_nothing(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  static uint8_t long_key[4097];
  memset(long_key, 'k', sizeof long_key);
  revledger_bytes too_long = {long_key, sizeof long_key};

  revledger_rule bad_key[] = {
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 100},
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), too_long, 100},
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("mike"), 100},
  };
  FAILS(revledger_revoke_batch(w, bad_key, 3), REVLEDGER_INVALID_ARGUMENT);

  revledger_rule bad_scope[] = {
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 100},
      {(revledger_scope)7, B("acme"), B("x"), 100},
  };
  FAILS(revledger_revoke_batch(w, bad_scope, 2), REVLEDGER_INVALID_ARGUMENT);

  revledger_rule null_ptr[] = {
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 100},
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), (revledger_bytes){NULL, 4}, 100},
  };
  FAILS(revledger_revoke_batch(w, null_ptr, 2), REVLEDGER_INVALID_ARGUMENT);

  revledger_rule misshapen[] = {
      {REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 100},
      {REVLEDGER_SCOPE_ROLE, B("acme"), NONE, 100}, /* a role rule needs a key */
  };
  FAILS(revledger_revoke_batch(w, misshapen, 2), REVLEDGER_INVALID_ARGUMENT);

  FAILS(revledger_revoke_batch(w, NULL, 1), REVLEDGER_INVALID_ARGUMENT);

  EXPECT(rule_records(w) == 0);
  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 10);
  EXPECT_VALID(w, &john);
  revledger_close(w);
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  EXPECT_VALID(r, &john);
  EXPECT(rule_records(r) == 0);
  revledger_close(r);
}

/* Many revokes, one sync (group commit); everything is there after close and reopen,
 * and the reopened writer appends after it. */
static void group_commit_then_reopen(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  char sub[32];
  for (int i = 0; i < 100; i++) {
    snprintf(sub, sizeof sub, "s%d", i);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("t"), B(sub), 1000 + i)));
  }
  EXPECT(OK(revledger_sync(w)));
  EXPECT(OK(revledger_sync(w))); /* nothing new: still fine */
  revledger_close(w);

  w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 0, &w)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("t"), B("s100"), 5000)));
  revledger_close(w);

  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  EXPECT(rule_records(r) == 101);
  for (int i = 0; i <= 100; i++) {
    snprintf(sub, sizeof sub, "s%d", i);
    revledger_token t = tok("t", sub, NULL, NULL, NULL, NULL, NULL, 999);
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, i == 100 ? 5000 : 1000 + i);
  }
  revledger_close(r);
}

/* Compaction drops dead rules, keeps live ones, and a reader opened before it follows
 * the new file on its next check; the writer keeps appending to the new file. */
static void compaction_keeps_live_rules_and_readers_follow(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL, *r = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_statistics st;
  REQUIRE(OK(revledger_stats(w, 0, &st)));
  EXPECT(st.max_token_lifetime == 3600);
  const int64_t leeway = st.leeway;
  EXPECT(leeway >= 0);

  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("old"), 1000)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("live"), 5000)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("live"), 4000)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_TOKEN, B("acme"), B("jti-live"), 9000)));

  revledger_token live = tok("acme", "live", NULL, NULL, NULL, NULL, NULL, 4500);
  revledger_token jti = tok("acme", "x", NULL, NULL, NULL, NULL, "jti-live", 4500);
  EXPECT_REVOKED(r, &live, REVLEDGER_SCOPE_SUBJECT, 5000);
  EXPECT_REVOKED(r, &jti, REVLEDGER_SCOPE_TOKEN, 9000);
  EXPECT(rule_records(r) == 4);

  /* At `now`, "old" (1000 + lifetime + leeway < now) is dead; "live" is not. */
  const int64_t now = 1000 + 3600 + leeway + 1;
  REQUIRE(OK(revledger_stats(r, now, &st)));
  EXPECT(st.live_keys == 3);
  EXPECT(st.expired_keys == 1);
  REQUIRE(OK(revledger_compact(w, now)));

  /* The old reader follows: same answers, and the figures of the new file. */
  EXPECT_REVOKED(r, &live, REVLEDGER_SCOPE_SUBJECT, 5000);
  EXPECT_REVOKED(r, &jti, REVLEDGER_SCOPE_TOKEN, 9000);
  REQUIRE(OK(revledger_stats(r, now, &st)));
  EXPECT(st.live_keys == 2);
  EXPECT(st.expired_keys == 0);
  EXPECT(st.rule_records == 2);

  /* The writer appends to the new file; the old reader sees it. */
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("admin"), 6000)));
  const char *roles[] = {"admin", NULL};
  revledger_bytes rb[2];
  revledger_token admin = tok("acme", "y", rb, roles, NULL, NULL, NULL, 5500);
  EXPECT_REVOKED(r, &admin, REVLEDGER_SCOPE_ROLE, 6000);

  revledger_close(w);
  revledger *r2 = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r2)));
  EXPECT_REVOKED(r2, &live, REVLEDGER_SCOPE_SUBJECT, 5000);
  EXPECT_REVOKED(r2, &jti, REVLEDGER_SCOPE_TOKEN, 9000);
  EXPECT_REVOKED(r2, &admin, REVLEDGER_SCOPE_ROLE, 6000);
  EXPECT(rule_records(r2) == 3);
  revledger_close(r2);
  revledger_close(r);
}

/* max_token_lifetime: 0 at creation is one day; reopening with 0 keeps it; a larger
 * value raises it (and is kept); the lifetime is in stats on readers too. */
static void max_token_lifetime_is_kept_and_raised(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  revledger_statistics st;
  REQUIRE(OK(revledger_open_writer(path, 0, &w)));
  REQUIRE(OK(revledger_stats(w, 0, &st)));
  EXPECT(st.max_token_lifetime == 86400);
  revledger_close(w);

  REQUIRE(OK(revledger_open_writer(path, 0, &w)));
  REQUIRE(OK(revledger_stats(w, 0, &st)));
  EXPECT(st.max_token_lifetime == 86400);
  revledger_close(w);

  REQUIRE(OK(revledger_open_writer(path, 100000, &w)));
  REQUIRE(OK(revledger_stats(w, 0, &st)));
  EXPECT(st.max_token_lifetime == 100000);
  EXPECT(st.rule_records == 0);
  revledger_close(w);

  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  REQUIRE(OK(revledger_stats(r, 0, &st)));
  EXPECT(st.max_token_lifetime == 100000);
  EXPECT(st.log_bytes > 0 && st.file_bytes >= st.log_bytes);
  revledger_close(r);
}

/* Keys are bytes: embedded NULs and non-UTF-8 bytes are kept exactly, and the split
 * between tenant and key matters. */
static void keys_are_exact_byte_strings(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  static const uint8_t tenant[] = {0x00, 0xFF, 'a'};
  static const uint8_t key[] = {'b', 0x00, 0x80};
  revledger_bytes bt = {tenant, sizeof tenant}, bk = {key, sizeof key};
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, bt, bk, 100)));
  revledger_token t;
  memset(&t, 0, sizeof t);
  t.tenant = bt;
  t.subject = bk;
  t.issued_at = 50;
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_SUBJECT, 100);
  t.subject.len = 2; /* "b\0" */
  EXPECT_VALID(w, &t);
  t.subject.len = 3;
  t.tenant.len = 2;
  EXPECT_VALID(w, &t);
  /* (tenant "a", sub "bc") and (tenant "ab", sub "c") are different keys. */
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("a"), B("bc"), 100)));
  revledger_token ab_c = tok("ab", "c", NULL, NULL, NULL, NULL, NULL, 50);
  EXPECT_VALID(w, &ab_c);
  revledger_token a_bc = tok("a", "bc", NULL, NULL, NULL, NULL, NULL, 50);
  EXPECT_REVOKED(w, &a_bc, REVLEDGER_SCOPE_SUBJECT, 100);
  revledger_close(w);
}

/* Tokens with more roles than fit the ABI's stack buffer (16) are checked too, and
 * the latest role cutoff is named. */
static void many_roles(void) {
  char path[256];
  h_path(path, sizeof path, "l");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  enum { N = 40 };
  char names[N][16];
  revledger_bytes roles[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "role-%d", i);
    roles[i] = B(names[i]);
  }
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("t"), B("role-37"), 700)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("t"), B("role-3"), 800)));
  revledger_token t = tok("t", "u", NULL, NULL, NULL, NULL, NULL, 10);
  t.roles = roles;
  t.roles_len = N;
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_ROLE, 800);
  t.roles_len = 20; /* role-37 no longer carried; role-3 still is */
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_ROLE, 800);
  t.roles = roles + 4;
  t.roles_len = N - 4; /* only role-37 */
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_ROLE, 700);
  t.roles_len = 30; /* role-4 .. role-33 */
  EXPECT_VALID(w, &t);
  revledger_close(w);
}

static void version_and_status_names(void) {
  const char *v = revledger_version();
  REQUIRE(v != NULL);
  EXPECT(v[0] != '\0');
  EXPECT(v[0] >= '0' && v[0] <= '9');
  EXPECT(strchr(v, '.') != NULL);
  EXPECT(revledger_version() == v || strcmp(revledger_version(), v) == 0);

  const char *names[] = {"REVLEDGER_OK",      "REVLEDGER_INVALID_ARGUMENT",
                         "REVLEDGER_IO",      "REVLEDGER_CORRUPT",
                         "REVLEDGER_LOCKED",  "REVLEDGER_READ_ONLY",
                         "REVLEDGER_INCOMPATIBLE", "REVLEDGER_INTERNAL"};
  const revledger_status codes[] = {REVLEDGER_OK,        REVLEDGER_INVALID_ARGUMENT,
                                    REVLEDGER_IO,        REVLEDGER_CORRUPT,
                                    REVLEDGER_LOCKED,    REVLEDGER_READ_ONLY,
                                    REVLEDGER_INCOMPATIBLE, REVLEDGER_INTERNAL};
  for (size_t i = 0; i < 8; i++) {
    EXPECT((size_t)codes[i] == i);
    EXPECT(strcmp(revledger_status_name((uint32_t)codes[i]), names[i]) == 0);
  }
  EXPECT(strcmp(revledger_status_name(8), "unknown status") == 0);
  EXPECT(strcmp(revledger_status_name(0xFFFFFFFFu), "unknown status") == 0);
  /* The scope values are the ones DESIGN.md §4 fixes. */
  EXPECT(REVLEDGER_SCOPE_GLOBAL == 0 && REVLEDGER_SCOPE_TENANT == 1 &&
         REVLEDGER_SCOPE_SUBJECT == 2 && REVLEDGER_SCOPE_ROLE == 3 &&
         REVLEDGER_SCOPE_CLIENT == 4 && REVLEDGER_SCOPE_SESSION == 5 &&
         REVLEDGER_SCOPE_TOKEN == 6);
}

/* revledger_open_writer_with: options filled by _init (and only those), the file mode
 * and group of every file the writer creates, compaction off or in the background. */
static void writer_options_mode_group_and_compaction(void) {
  char path[256];
  h_path(path, sizeof path, "opts.ledger");
  revledger_writer_options raw;
  memset(&raw, 0, sizeof raw);
  revledger *w = NULL;
  EXPECT(revledger_open_writer_with(path, &raw, &w) == REVLEDGER_INVALID_ARGUMENT);
  EXPECT(strstr(revledger_last_error(), "revledger_writer_options_init") != NULL);
  EXPECT(w == NULL);

  revledger_writer_options o;
  revledger_writer_options_init(&o);
  EXPECT(o.struct_size == sizeof o);
  EXPECT(o.file_mode == 0600 && o.file_group == -1 && o.leeway_s == -1);
  o.max_token_lifetime_s = 3600;
  o.file_mode = 0640;
  o.file_group = (int64_t)getgid();
  o.compaction = 7;
  EXPECT(revledger_open_writer_with(path, &o, &w) == REVLEDGER_INVALID_ARGUMENT);
  o.compaction = REVLEDGER_COMPACTION_OFF;
  /* A byte, not a bool: what is neither 0 nor 1 is refused, never taken as "keep". */
  memset(&o.keep_valid_prefix, 0x5a, 1);
  EXPECT(revledger_open_writer_with(path, &o, &w) == REVLEDGER_INVALID_ARGUMENT);
  EXPECT(strstr(revledger_last_error(), "keep_valid_prefix") != NULL);
  EXPECT(w == NULL);
  o.keep_valid_prefix = 0;
  REQUIRE(OK(revledger_open_writer_with(path, &o, &w)));
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  EXPECT((st.st_mode & 07777) == 0640);
  EXPECT(st.st_gid == getgid());
  for (int i = 0; i < 100; i++) {
    char key[32];
    snprintf(key, sizeof key, "user-%d", i);
    REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("t"), B(key), 1000 + i)));
  }
  EXPECT(OK(revledger_wait_background(w)));
  REQUIRE(OK(revledger_compact(w, 0)));
  REQUIRE(stat(path, &st) == 0);
  EXPECT((st.st_mode & 07777) == 0640);
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_bytes rb[2];
  const char *none[] = {NULL};
  revledger_token t = tok("t", "user-42", rb, none, NULL, NULL, NULL, 1000);
  EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 1042);
  EXPECT(revledger_wait_background(r) == REVLEDGER_READ_ONLY);
  revledger_close(r);
  revledger_close(w);
  /* NULL options: the defaults. */
  h_path(path, sizeof path, "defaults.ledger");
  REQUIRE(OK(revledger_open_writer_with(path, NULL, &w)));
  REQUIRE(stat(path, &st) == 0);
  EXPECT((st.st_mode & 07777) == 0600);
  revledger_close(w);
  revledger_writer_options_init(NULL);
}

/* A log damaged in the middle (below what sync made durable): CORRUPT, or, asked to keep
 * the valid prefix, opened with the damaged record and every one after it cut, and
 * revledger_dropped_bytes says how many bytes that was. */
static void keep_valid_prefix_says_how_much_was_dropped(void) {
  char path[256];
  h_path(path, sizeof path, "damaged.ledger");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  for (int i = 0; i < 5; i++) {
    char key[32];
    snprintf(key, sizeof key, "user-%d", i);
    REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("t"), B(key), 1000)));
  }
  REQUIRE(OK(revledger_sync(w)));
  uint64_t dropped = 99;
  EXPECT(OK(revledger_dropped_bytes(w, &dropped)) && dropped == 0);
  EXPECT(revledger_dropped_bytes(w, NULL) == REVLEDGER_INVALID_ARGUMENT);
  EXPECT(revledger_dropped_bytes(NULL, &dropped) == REVLEDGER_INVALID_ARGUMENT);
  revledger_close(w);
  /* One byte of the first record's payload (the log starts at 256; its frame header is
   * 8 bytes). */
  FILE *f = fopen(path, "r+b");
  REQUIRE(f != NULL);
  REQUIRE(fseek(f, 256 + 8 + 4, SEEK_SET) == 0);
  int c = fgetc(f);
  REQUIRE(c != EOF);
  REQUIRE(fseek(f, 256 + 8 + 4, SEEK_SET) == 0);
  REQUIRE(fputc(c ^ 1, f) != EOF);
  REQUIRE(fclose(f) == 0);
  EXPECT(revledger_open_writer(path, 3600, &w) == REVLEDGER_CORRUPT);
  revledger_writer_options o;
  revledger_writer_options_init(&o);
  o.keep_valid_prefix = 1;
  REQUIRE(OK(revledger_open_writer_with(path, &o, &w)));
  EXPECT(OK(revledger_dropped_bytes(w, &dropped)));
  EXPECT(dropped >= 5 * 40);
  revledger_bytes rb[1];
  const char *none[] = {NULL};
  revledger_token t = tok("t", "user-4", rb, none, NULL, NULL, NULL, 999);
  EXPECT_VALID(w, &t);
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  EXPECT(OK(revledger_dropped_bytes(r, &dropped)) && dropped == 0);
  revledger_close(r);
  revledger_close(w);
}

/* Checks `t` (revoked) once a millisecond until the reader fails; the number of checks,
 * or 0 when it still answered after 2,000 (the countdown alone would take 4,093). */
static int checks_until_error(const revledger *r, const revledger_token *t,
                              revledger_status *status) {
  for (int n = 1; n <= 2000; n++) {
    revledger_verdict v;
    *status = revledger_check(r, t, &v);
    if (*status != REVLEDGER_OK) return n;
    EXPECT(v.revoked);
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  return 0;
}

/* A reader whose file is deleted, or replaced by another ledger, fails closed at once
 * (DESIGN.md §3): the kernel's notice tells it, long before its countdown. */
static void deleted_or_replaced_ledger_fails_closed_at_once(void) {
  char path[256], other[256];
  h_path(path, sizeof path, "gone.ledger");
  h_path(other, sizeof other, "other.ledger");
  revledger_bytes rb[1];
  const char *none[] = {NULL};
  revledger_token john = tok("t", "john", rb, none, NULL, NULL, NULL, 999);
  for (int replace = 0; replace <= 1; replace++) {
    revledger *w = NULL, *r = NULL;
    REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
    REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("t"), B("john"), 1000)));
    REQUIRE(OK(revledger_open_reader(path, &r)));
    EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_SUBJECT, 1000);
    revledger_close(w);
    if (replace) {
      revledger *o = NULL;
      REQUIRE(OK(revledger_open_writer(other, 3600, &o)));
      REQUIRE(OK(revledger_revoke(o, REVLEDGER_SCOPE_SUBJECT, B("t"), B("john"), 1000)));
      revledger_close(o);
      REQUIRE(rename(other, path) == 0);
    } else {
      REQUIRE(unlink(path) == 0);
    }
    revledger_status status;
    int n = checks_until_error(r, &john, &status);
    EXPECT(n > 0);
    EXPECT(status == REVLEDGER_IO);
    if (n == 0 || status != REVLEDGER_IO)
      fprintf(stderr, "    replace=%d: %d checks, status %d: %s\n", replace, n, (int)status,
              revledger_last_error());
    revledger_close(r);
    unlink(path);
  }
}

int main(void) {
  RUN(design_scenario_super_admin_changes);
  RUN(every_scope_revokes_its_tokens_only);
  RUN(reader_sees_each_commit_on_its_next_check);
  RUN(cutoff_is_the_maximum_and_never_lowered);
  RUN(revoke_now_rounds_up_to_the_next_second);
  RUN(revoke_batch_commits_every_rule);
  RUN(revoke_batch_is_all_or_nothing);
  RUN(group_commit_then_reopen);
  RUN(compaction_keeps_live_rules_and_readers_follow);
  RUN(max_token_lifetime_is_kept_and_raised);
  RUN(keys_are_exact_byte_strings);
  RUN(many_roles);
  RUN(version_and_status_names);
  RUN(writer_options_mode_group_and_compaction);
  RUN(keep_valid_prefix_says_how_much_was_dropped);
  RUN(deleted_or_replaced_ledger_fails_closed_at_once);
  return h_finish();
}
