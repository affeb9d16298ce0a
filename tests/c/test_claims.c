/* Claim mappings at the C ABI: revledger_claims_new/_free, revledger_check_claims and
 * revledger_check_jwt. The argument is a file of provider-shaped tokens signed by PyJWT
 * (tests/claims/sign.py --format lines, made by tests/c/run.sh): each is checked against
 * ledgers holding the rules that must and must not revoke it. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <pthread.h>
#include <time.h>

static const char *tokens_file;

/* ---- helpers ---------------------------------------------------------------------- */

/* base64url without padding of `n` bytes into `out` (NUL-terminated). */
static void b64url(const char *in, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *s = (const unsigned char *)in;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
    if (i + 2 < n) v |= s[i + 2];
    out[o++] = abc[(v >> 18) & 63];
    out[o++] = abc[(v >> 12) & 63];
    if (i + 1 < n) out[o++] = abc[(v >> 6) & 63];
    if (i + 2 < n) out[o++] = abc[v & 63];
  }
  out[o] = '\0';
}

/* "eyJ...(header).<payload>.c2ln" for the JSON payload `json`. */
static void make_jwt(const char *json, char *out, size_t cap) {
  char payload[4096];
  REQUIRE(strlen(json) * 4 / 3 + 4 < sizeof payload);
  b64url(json, strlen(json), payload);
  int n = snprintf(out, cap, "eyJhbGciOiJSUzI1NiJ9.%s.c2lnbmF0dXJl", payload);
  EXPECT(n > 0 && (size_t)n < cap);
}

static bool open_pair(revledger **w, revledger **r, const char *name) {
  char path[256];
  h_path(path, sizeof path, name);
  *w = NULL;
  *r = NULL;
  return OK(revledger_open_writer(path, 7200, w)) && OK(revledger_open_reader(path, r));
}

static bool contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* ---- cases ------------------------------------------------------------------------ */

static void builtin_and_pointer_specs_compile(void) {
  const char *specs[] = {"generic", "auth0", "keycloak", "entra",
                         "{\"subject\":[\"/sub\"],\"roles\":[\"/realm_access/roles\"]}"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    revledger_claims *c = NULL;
    EXPECT(OK(revledger_claims_new(specs[i], &c)));
    EXPECT(c != NULL);
    revledger_claims_free(c);
  }
  revledger_claims_free(NULL);
}

static void bad_specs_are_invalid_argument_and_say_why(void) {
  revledger_claims *c = (revledger_claims *)(uintptr_t)0x5EED;
  FAILS(revledger_claims_new("okta", &c), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "unknown claim mapping \"okta\""));
  FAILS(revledger_claims_new("{\"subject\":[\"sub\"]}", &c), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "must start with '/'"));
  FAILS(revledger_claims_new("{\"roles\":[\"/a/*/*\"]}", &c), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "more than one '*'"));
  FAILS(revledger_claims_new("{\"roles\":", &c), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_claims_new("\xff\xfe", &c), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "UTF-8"));
  FAILS(revledger_claims_new(NULL, &c), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "spec is NULL"));
  EXPECT(c == (revledger_claims *)(uintptr_t)0x5EED);
  FAILS(revledger_claims_new("generic", NULL), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "out is NULL"));
}

static void check_claims_and_check_jwt_read_keycloak_tokens(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r, "l"));
  revledger_claims *kc = NULL;
  REQUIRE(OK(revledger_claims_new("keycloak", &kc)));
  int64_t now = (int64_t)time(NULL);
  char json[1024], jwt[4096];
  snprintf(json, sizeof json,
           "{\"iss\":\"https://sso/realms/acme\",\"sub\":\"john\",\"iat\":%lld,"
           "\"realm_access\":{\"roles\":[\"a:b\"]},"
           "\"resource_access\":{\"billing-api\":{\"roles\":[\"refund\"]}}}",
           (long long)(now - 10));
  make_jwt(json, jwt, sizeof jwt);

  revledger_verdict v;
  memset(&v, 0xA5, sizeof v);
  EXPECT(OK(revledger_check_claims(r, kc, B(json), &v)));
  EXPECT(!v.revoked && v.scope == REVLEDGER_SCOPE_GLOBAL && v.cutoff == 0);
  EXPECT(OK(revledger_check_jwt(r, kc, B(jwt), &v)));
  EXPECT(!v.revoked);

  /* The client role's key, and the realm role "a:b" escaped: they never meet. */
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("https://sso/realms/acme"),
                              B("billing-api:refund"), now - 5)));
  EXPECT(OK(revledger_check_jwt(r, kc, B(jwt), &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_ROLE && v.cutoff == now - 5);
  EXPECT(OK(revledger_check_claims(r, kc, B(json), &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_ROLE && v.cutoff == now - 5);

  /* A subject rule with a later cutoff is named instead. */
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("https://sso/realms/acme"),
                              B("john"), now - 4)));
  EXPECT(OK(revledger_check_jwt(r, kc, B(jwt), &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_SUBJECT && v.cutoff == now - 4);
  /* The same check with the token as pointer and length (for LuaJIT). */
  memset(&v, 0, sizeof v);
  EXPECT(OK(revledger_check_jwt_ptr(r, kc, (const uint8_t *)jwt, strlen(jwt), &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_SUBJECT && v.cutoff == now - 4);

  /* The generic mapping reads no tenant from iss: the rules above are not its. */
  revledger_claims *gen = NULL;
  REQUIRE(OK(revledger_claims_new("generic", &gen)));
  EXPECT(OK(revledger_check_jwt(r, gen, B(jwt), &v)));
  EXPECT(!v.revoked);
  revledger_claims_free(gen);
  revledger_claims_free(kc);
  revledger_close(r);
  revledger_close(w);
}

static void unreadable_tokens_are_invalid_argument_naming_the_claim(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r, "l"));
  revledger_claims *c = NULL;
  REQUIRE(OK(revledger_claims_new("generic", &c)));
  struct {
    const char *json;
    const char *needle;
  } payloads[] = {
      {"[1,2]", "must be a JSON object"},
      {"{\"sub\":\"john\"}", "no \"iat\""},
      {"{\"iat\":\"yesterday\"}", "claim \"iat\" must be a number"},
      {"{\"iat\":1,\"sub\":42}", "claim \"sub\" must be a string"},
      {"{\"iat\":1,\"roles\":[\"a\",7]}", "claim \"roles/1\" must be a string"},
      {"{\"iat\":1,", "not valid JSON"},
  };
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  char jwt[4096];
  for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
    EXPECT(FAILS(revledger_check_claims(r, c, B(payloads[i].json), &v),
                 REVLEDGER_INVALID_ARGUMENT));
    EXPECT(contains(revledger_last_error(), payloads[i].needle));
    make_jwt(payloads[i].json, jwt, sizeof jwt);
    EXPECT(FAILS(revledger_check_jwt(r, c, B(jwt), &v), REVLEDGER_INVALID_ARGUMENT));
    EXPECT(contains(revledger_last_error(), payloads[i].needle));
  }
  const char *jwts[][2] = {
      {"eyJhbGciOiJub25lIn0.e30", "2 parts"},
      {"a.b.c.d.e", "JWE"},
      {"eyJhbGciOiJub25lIn0.eyJ*aWF0IjoxfQ.sig", "not base64url"},
      {"", "empty"},
  };
  for (size_t i = 0; i < sizeof jwts / sizeof jwts[0]; i++) {
    EXPECT(FAILS(revledger_check_jwt(r, c, B(jwts[i][0]), &v), REVLEDGER_INVALID_ARGUMENT));
    EXPECT(contains(revledger_last_error(), jwts[i][1]));
  }
  /* Out-parameters untouched by every failure. */
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_TOKEN && v.cutoff == 77);
  revledger_claims_free(c);
  revledger_close(r);
  revledger_close(w);
}

static void null_pointers_and_bad_lengths_are_invalid_argument(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r, "l"));
  revledger_claims *c = NULL;
  REQUIRE(OK(revledger_claims_new("generic", &c)));
  const char *json = "{\"sub\":\"x\",\"iat\":1}";
  revledger_verdict v = {true, REVLEDGER_SCOPE_TOKEN, 77};
  FAILS(revledger_check_claims(NULL, c, B(json), &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "ledger handle is NULL"));
  FAILS(revledger_check_claims(r, NULL, B(json), &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "claims is NULL"));
  FAILS(revledger_check_claims(r, c, B(json), NULL), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "out is NULL"));
  revledger_bytes dangling = {NULL, 5};
  FAILS(revledger_check_claims(r, c, dangling, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "json: ptr is NULL but len is 5"));
  FAILS(revledger_check_jwt(r, c, dangling, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "jwt: ptr is NULL but len is 5"));
  revledger_bytes huge = {(const uint8_t *)json, SIZE_MAX};
  FAILS(revledger_check_jwt(r, c, huge, &v), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check_jwt(NULL, c, B("a.b.c"), &v), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check_jwt(r, NULL, B("a.b.c"), &v), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check_jwt(r, c, B("a.b.c"), NULL), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check_jwt_ptr(r, c, NULL, 5, &v), REVLEDGER_INVALID_ARGUMENT);
  EXPECT(contains(revledger_last_error(), "jwt: ptr is NULL but len is 5"));
  FAILS(revledger_check_jwt_ptr(r, c, (const uint8_t *)"a.b", 3, &v), REVLEDGER_INVALID_ARGUMENT);
  FAILS(revledger_check_jwt_ptr(NULL, c, (const uint8_t *)"a.b.c", 5, &v),
        REVLEDGER_INVALID_ARGUMENT);
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_TOKEN && v.cutoff == 77);
  revledger_claims_free(c);
  revledger_close(r);
  revledger_close(w);
}

/* One mapping and one reader shared by threads that check while the writer revokes. */
struct shared {
  const revledger *reader;
  const revledger_claims *claims;
  const char *jwt;
};

static void *checker(void *arg) {
  const struct shared *s = arg;
  for (int i = 0; i < 2000; i++) {
    revledger_verdict v;
    if (revledger_check_jwt(s->reader, s->claims, B(s->jwt), &v) != REVLEDGER_OK) {
      h_fail(__FILE__, __LINE__, revledger_last_error());
      break;
    }
  }
  return NULL;
}

static void one_mapping_serves_many_threads(void) {
  revledger *w, *r;
  REQUIRE(open_pair(&w, &r, "l"));
  revledger_claims *c = NULL;
  REQUIRE(OK(revledger_claims_new("entra", &c)));
  int64_t now = (int64_t)time(NULL);
  char json[512], jwt[2048];
  snprintf(json, sizeof json,
           "{\"tid\":\"t\",\"oid\":\"o\",\"roles\":[\"r1\",\"r2\"],\"scp\":\"a b\",\"iat\":%lld}",
           (long long)(now - 10));
  make_jwt(json, jwt, sizeof jwt);
  struct shared s = {r, c, jwt};
  pthread_t threads[4];
  for (int i = 0; i < 4; i++) REQUIRE(pthread_create(&threads[i], NULL, checker, &s) == 0);
  for (int i = 0; i < 50; i++) {
    char key[32];
    snprintf(key, sizeof key, "other-%d", i);
    EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("t"), B(key), now)));
  }
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("t"), B("b"), now)));
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  revledger_verdict v;
  EXPECT(OK(revledger_check_jwt(r, c, B(jwt), &v)));
  EXPECT(v.revoked && v.scope == REVLEDGER_SCOPE_ROLE && v.cutoff == now);
  revledger_claims_free(c);
  revledger_close(r);
  revledger_close(w);
}

/* ---- tokens signed by PyJWT ------------------------------------------------------- */

static size_t unhex(const char *hex, char *out, size_t cap) {
  if (strcmp(hex, "-") == 0) {
    out[0] = '\0';
    return 0;
  }
  size_t n = strlen(hex) / 2;
  if (n + 1 > cap) n = cap - 1;
  for (size_t i = 0; i < n; i++) {
    unsigned int byte = 0;
    if (sscanf(hex + 2 * i, "%2x", &byte) != 1) byte = 0;
    out[i] = (char)byte;
  }
  out[n] = '\0';
  return n;
}

static int scope_of(const char *name) {
  const char *names[] = {"global", "tenant", "subject", "role", "client", "session", "token"};
  for (int i = 0; i < 7; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

struct signed_token {
  char name[128];
  char spec[1024];
  long long iat, exp;
  char jwt[8192];
  revledger_claims *claims;
};

static void check_one_rule(struct signed_token *t, int scope, const char *tenant,
                           const char *key, bool must_revoke, int n) {
  char file[64];
  snprintf(file, sizeof file, "l%d", n);
  revledger *w, *r;
  if (!open_pair(&w, &r, file)) return;
  int64_t at = scope == REVLEDGER_SCOPE_TOKEN ? t->exp : t->iat + 1;
  revledger_verdict v;
  if (OK(revledger_check_jwt(r, t->claims, B(t->jwt), &v))) EXPECT(!v.revoked);
  if (OK(revledger_revoke(w, (revledger_scope)scope, B(tenant), B(key), at)) &&
      OK(revledger_check_jwt(r, t->claims, B(t->jwt), &v))) {
    if (v.revoked != must_revoke ||
        (must_revoke && (v.scope != (revledger_scope)scope || v.cutoff != at))) {
      char what[9000];
      snprintf(what, sizeof what, "%s: rule %d \"%s\" \"%s\" %s it", t->name, scope, tenant,
               key, must_revoke ? "did not revoke" : "revoked");
      h_fail(__FILE__, 0, what);
    }
  }
  revledger_close(r);
  revledger_close(w);
}

static void pyjwt_signed_provider_tokens(void) {
  REQUIRE(tokens_file != NULL);
  FILE *f = fopen(tokens_file, "r");
  REQUIRE(f != NULL);
  static char line[16384];
  static struct signed_token t;
  t.claims = NULL;
  int tokens = 0, rules = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    char kind[32], a[8192], b[8192], c[8192];
    if (strncmp(line, "token ", 6) == 0) {
      revledger_claims_free(t.claims);
      t.claims = NULL;
      char spec_hex[2048];
      if (sscanf(line, "token %127s %2047s %lld %lld %8191s", t.name, spec_hex, &t.iat, &t.exp,
                 t.jwt) != 5) {
        h_fail(__FILE__, __LINE__, line);
        break;
      }
      unhex(spec_hex, t.spec, sizeof t.spec);
      if (!OK(revledger_claims_new(t.spec, &t.claims))) break;
      tokens++;
    } else if (sscanf(line, "%31s %8191s %8191s %8191s", kind, a, b, c) == 4 && t.claims) {
      char tenant[4096], key[4096];
      unhex(b, tenant, sizeof tenant);
      unhex(c, key, sizeof key);
      int scope = scope_of(a);
      EXPECT(scope >= 0);
      if (scope < 0) continue;
      check_one_rule(&t, scope, tenant, key, strcmp(kind, "revoked_by") == 0, rules++);
    } else {
      h_fail(__FILE__, __LINE__, line);
    }
  }
  revledger_claims_free(t.claims);
  fclose(f);
  EXPECT(tokens >= 5);
  EXPECT(rules >= 40);
  printf("     %d tokens, %d rules\n", tokens, rules);
}

int main(int argc, char **argv) {
  tokens_file = argc > 1 ? argv[1] : NULL;
  RUN(builtin_and_pointer_specs_compile);
  RUN(bad_specs_are_invalid_argument_and_say_why);
  RUN(check_claims_and_check_jwt_read_keycloak_tokens);
  RUN(unreadable_tokens_are_invalid_argument_naming_the_claim);
  RUN(null_pointers_and_bad_lengths_are_invalid_argument);
  RUN(one_mapping_serves_many_threads);
  RUN(pyjwt_signed_provider_tokens);
  return h_finish();
}
