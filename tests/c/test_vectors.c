/* Runs the shared table of cases (tests/vectors/cases.txt, format in
 * tests/vectors/README.md) through the C ABI, as tests/vectors.rs does through Rust.
 * Each `case ... end` block is one test case. After a case's checks pass on the live
 * writer, they run again on a reader opened before the writer closed and on a fresh
 * reader opened after: answers must not change.
 *
 * Usage: test_vectors [path/to/cases.txt]  (default: found from the executable's
 * location, target/c-tests/<kind>/test_vectors -> tests/vectors/cases.txt). */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <errno.h>
#include <libgen.h>

/* ---- parsing --------------------------------------------------------------------- */

#define MAX_FIELDS 16

typedef struct {
  uint8_t *ptr;
  size_t len;
} owned;

static revledger_bytes view(owned o) {
  revledger_bytes b = {o.ptr, o.len};
  return b;
}

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A byte string field: `-` (empty), `*N*C` (C repeated N times) or percent-encoded
 * bytes. The empty string is {NULL, 0}. Returns false on a malformed field. */
static bool unescape(const char *f, owned *out) {
  out->ptr = NULL;
  out->len = 0;
  if (strcmp(f, "-") == 0) return true;
  if (f[0] == '*') {
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(f + 1, &end, 10);
    if (errno != 0 || end == f + 1 || end[0] != '*' || end[1] == '\0' || end[2] != '\0' ||
        n > (1u << 20))
      return false;
    out->len = (size_t)n;
    out->ptr = malloc(n == 0 ? 1 : (size_t)n);
    if (out->ptr == NULL) return false;
    memset(out->ptr, (unsigned char)end[1], (size_t)n);
    return true;
  }
  size_t n = strlen(f);
  out->ptr = malloc(n == 0 ? 1 : n);
  if (out->ptr == NULL) return false;
  for (size_t i = 0; i < n;) {
    if (f[i] == '%') {
      int hi = i + 1 < n ? hex(f[i + 1]) : -1;
      int lo = i + 2 < n ? hex(f[i + 2]) : -1;
      if (hi < 0 || lo < 0) goto bad;
      out->ptr[out->len++] = (uint8_t)(hi * 16 + lo);
      i += 3;
    } else {
      out->ptr[out->len++] = (uint8_t)f[i];
      i++;
    }
  }
  return true;
bad:
  free(out->ptr);
  out->ptr = NULL;
  out->len = 0;
  return false;
}

/* `-` for none, else byte strings separated by `,`. */
typedef struct {
  owned *items;
  revledger_bytes *views;
  size_t len;
} role_list;

static void free_roles(role_list *r) {
  for (size_t i = 0; i < r->len; i++) free(r->items[i].ptr);
  free(r->items);
  free(r->views);
  memset(r, 0, sizeof *r);
}

static bool parse_roles(const char *f, role_list *out) {
  memset(out, 0, sizeof *out);
  if (strcmp(f, "-") == 0) return true;
  size_t n = 1;
  for (const char *p = f; *p; p++) n += *p == ',';
  out->items = calloc(n, sizeof *out->items);
  out->views = calloc(n, sizeof *out->views);
  char *copy = strdup(f);
  if (out->items == NULL || out->views == NULL || copy == NULL) {
    free(copy);
    free_roles(out);
    return false;
  }
  char *start = copy;
  for (size_t i = 0; i < n; i++) {
    char *comma = strchr(start, ',');
    if (comma != NULL) *comma = '\0';
    if (!unescape(start, &out->items[i])) {
      free(copy);
      free_roles(out);
      return false;
    }
    out->views[i] = view(out->items[i]);
    out->len = i + 1;
    start = comma == NULL ? start + strlen(start) : comma + 1;
  }
  free(copy);
  return true;
}

static bool parse_i64(const char *f, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(f, &end, 10);
  if (errno != 0 || end == f || *end != '\0') return false;
  *out = (int64_t)v;
  return true;
}

static const char *const SCOPE_NAMES[] = {"global", "tenant",  "subject", "role",
                                          "client", "session", "token"};

/* A scope field: a name, or a decimal integer given to the ABI as is. Sets *fits to
 * false for an integer no revledger_scope can carry (over 32 bits). */
static bool parse_scope(const char *f, uint32_t *out, bool *fits) {
  *fits = true;
  for (uint32_t i = 0; i < 7; i++) {
    if (strcmp(f, SCOPE_NAMES[i]) == 0) {
      *out = i;
      return true;
    }
  }
  if (f[0] < '0' || f[0] > '9') return false;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(f, &end, 10);
  if (*end != '\0') return false;
  if (errno == ERANGE || v > UINT32_MAX) {
    *fits = false;
    *out = UINT32_MAX;
    return true;
  }
  *out = (uint32_t)v;
  return true;
}

/* A status name without the REVLEDGER_ prefix. */
static bool parse_status(const char *f, revledger_status *out) {
  for (uint32_t i = 0; i < 8; i++) {
    const char *name = revledger_status_name(i);
    if (strncmp(name, "REVLEDGER_", 10) == 0 && strcmp(name + 10, f) == 0) {
      *out = (revledger_status)i;
      return true;
    }
  }
  return false;
}

static size_t split(char *line, char **fields) {
  size_t n = 0;
  char *p = line;
  while (n < MAX_FIELDS) {
    fields[n++] = p;
    char *sp = strchr(p, ' ');
    if (sp == NULL) break;
    *sp = '\0';
    p = sp + 1;
  }
  return n;
}

/* ---- running ----------------------------------------------------------------------- */

#define FAIL_AT(lineno, ...)                                                             \
  do {                                                                                   \
    char msg_[512];                                                                      \
    snprintf(msg_, sizeof msg_, __VA_ARGS__);                                            \
    char where_[64];                                                                     \
    snprintf(where_, sizeof where_, "cases.txt line %d", (lineno));                      \
    h_fail(where_, 0, msg_);                                                             \
  } while (0)

typedef struct {
  uint64_t rule_records, log_bytes;
} footprint;

static bool footprint_of(const revledger *h, footprint *out) {
  revledger_statistics st;
  if (revledger_stats(h, 0, &st) != REVLEDGER_OK) return false;
  out->rule_records = st.rule_records;
  out->log_bytes = st.log_bytes;
  return true;
}

/* rule / rule-error: fields after the statement word. */
static void run_rule(revledger *w, char **f, size_t n, int lineno, const char *label) {
  bool is_error = strcmp(f[0], "rule-error") == 0;
  if (n != (is_error ? 6u : 5u)) {
    FAIL_AT(lineno, "%s: %zu fields", f[0], n);
    return;
  }
  uint32_t scope;
  bool fits;
  owned tenant = {0}, key = {0};
  int64_t at;
  revledger_status want = REVLEDGER_OK;
  if (!parse_scope(f[1], &scope, &fits) || !unescape(f[2], &tenant) ||
      !unescape(f[3], &key) || !parse_i64(f[4], &at) ||
      (is_error && !parse_status(f[5], &want))) {
    FAIL_AT(lineno, "malformed %s statement", f[0]);
    free(tenant.ptr);
    free(key.ptr);
    return;
  }
  footprint before = {0, 0}, after = {0, 0};
  bool counted = footprint_of(w, &before);
  revledger_status got;
  if (fits) {
    got = revledger_revoke(w, (revledger_scope)scope, view(tenant), view(key), at);
  } else {
    got = REVLEDGER_INVALID_ARGUMENT; /* no revledger_scope can carry it */
  }
  if (got != want) {
    FAIL_AT(lineno, "%s: revledger_revoke returned %s, expected %s (%s)", label,
            h_status(got), h_status(want), got == REVLEDGER_OK ? "-" : revledger_last_error());
  } else if (is_error && fits) {
    const char *msg = revledger_last_error();
    if (msg == NULL || msg[0] == '\0')
      FAIL_AT(lineno, "%s: failed with %s but revledger_last_error() is empty", label,
              h_status(got));
    /* ... and changed nothing. */
    if (!counted || !footprint_of(w, &after) || after.rule_records != before.rule_records ||
        after.log_bytes != before.log_bytes)
      FAIL_AT(lineno, "%s: a refused rule changed the ledger", label);
  }
  free(tenant.ptr);
  free(key.ptr);
}

/* check / check-error: f[] are the statement's fields. */
static void run_check(const revledger *h, char **f, size_t n, int lineno, const char *label) {
  bool is_error = strcmp(f[0], "check-error") == 0;
  owned tenant = {0}, subject = {0}, client = {0}, session = {0}, jti = {0};
  role_list roles = {0};
  int64_t iat = 0, cutoff = 0;
  uint32_t want_scope = 0;
  bool fits = true;
  revledger_status want_status = REVLEDGER_OK;
  bool want_revoked = false;
  bool parsed = n >= 9 && unescape(f[1], &tenant) && unescape(f[2], &subject) &&
                parse_roles(f[3], &roles) && unescape(f[4], &client) &&
                unescape(f[5], &session) && unescape(f[6], &jti) && parse_i64(f[7], &iat);
  if (parsed) {
    if (is_error) {
      parsed = n == 9 && parse_status(f[8], &want_status);
    } else if (strcmp(f[8], "valid") == 0) {
      parsed = n == 9;
    } else if (strcmp(f[8], "revoked") == 0) {
      want_revoked = true;
      parsed = n == 11 && parse_scope(f[9], &want_scope, &fits) && fits && want_scope < 7 &&
               parse_i64(f[10], &cutoff);
    } else {
      parsed = false;
    }
  }
  if (!parsed) {
    FAIL_AT(lineno, "malformed %s statement", f[0]);
    goto done;
  }
  revledger_token t;
  memset(&t, 0, sizeof t);
  t.tenant = view(tenant);
  t.subject = view(subject);
  t.client = view(client);
  t.session = view(session);
  t.token_id = view(jti);
  t.roles = roles.views;
  t.roles_len = roles.len;
  t.issued_at = iat;
  revledger_verdict v;
  memset(&v, 0xA5, sizeof v);
  const revledger_verdict untouched = v;
  revledger_status got = revledger_check(h, &t, &v);
  if (is_error) {
    if (got != want_status)
      FAIL_AT(lineno, "%s: revledger_check returned %s, expected %s", label, h_status(got),
              h_status(want_status));
    else if (revledger_last_error()[0] == '\0')
      FAIL_AT(lineno, "%s: failed but revledger_last_error() is empty", label);
    else if (memcmp(&v, &untouched, sizeof v) != 0)
      FAIL_AT(lineno, "%s: a failed check wrote its out-parameter", label);
  } else if (got != REVLEDGER_OK) {
    FAIL_AT(lineno, "%s: revledger_check returned %s: %s", label, h_status(got),
            revledger_last_error());
  } else if (v.revoked != want_revoked ||
             (want_revoked && ((uint32_t)v.scope != want_scope || v.cutoff != cutoff)) ||
             (!want_revoked && (v.scope != REVLEDGER_SCOPE_GLOBAL || v.cutoff != 0))) {
    FAIL_AT(lineno, "%s: got {revoked=%d scope=%u cutoff=%lld}, expected {revoked=%d scope=%u "
            "cutoff=%lld}", label, (int)v.revoked, (unsigned)v.scope, (long long)v.cutoff,
            (int)want_revoked, want_scope, (long long)cutoff);
  }
done:
  free(tenant.ptr);
  free(subject.ptr);
  free(client.ptr);
  free(session.ptr);
  free(jti.ptr);
  free_roles(&roles);
}

typedef struct {
  char *text; /* the statement line, unsplit */
  int lineno;
} saved_check;

static void rerun_checks(const revledger *h, saved_check *checks, size_t n, const char *label) {
  for (size_t i = 0; i < n; i++) {
    char *copy = strdup(checks[i].text);
    if (copy == NULL) abort();
    char *f[MAX_FIELDS];
    size_t nf = split(copy, f);
    run_check(h, f, nf, checks[i].lineno, label);
    free(copy);
  }
}

static char *read_all(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) return NULL;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    size_t got = fread(buf + len, 1, cap - len - 1, fp);
    len += got;
    if (len < cap - 1) break;
    cap *= 2;
    char *bigger = realloc(buf, cap);
    if (bigger == NULL) free(buf);
    buf = bigger;
  }
  fclose(fp);
  if (buf != NULL) buf[len] = '\0';
  return buf;
}

/* The vectors file: argv[1], else relative to this executable. */
static bool find_cases(int argc, char **argv, char *out, size_t size) {
  if (argc > 1) {
    snprintf(out, size, "%s", argv[1]);
    return true;
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return false;
  exe[n] = '\0';
  const char *dir = dirname(exe);
  const char *candidates[] = {"../../../tests/vectors/cases.txt",
                              "../../tests/vectors/cases.txt"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(out, size, "%s/%s", dir, candidates[i]);
    if (access(out, R_OK) == 0) return true;
  }
  return false;
}

int main(int argc, char **argv) {
  char cases_path[4096];
  int file_problems = 0;
  int cases = 0;
  char *text = NULL;
  if (!find_cases(argc, argv, cases_path, sizeof cases_path) ||
      (text = read_all(cases_path)) == NULL) {
    fprintf(stderr, "    cannot read the shared vectors (tests/vectors/cases.txt)\n");
    file_problems++;
  }

  h_dir_make();
  revledger *w = NULL;
  char case_name[256] = "";
  char case_path[512];
  saved_check *checks = NULL;
  size_t n_checks = 0, cap_checks = 0;
  bool in_case = false;

  int lineno = 0;
  for (char *line = text; line != NULL && *line != '\0';) {
    char *next = strchr(line, '\n');
    if (next != NULL) *next++ = '\0';
    lineno++;
    /* Trim surrounding whitespace (as the Rust runner's trim()). */
    while (*line == ' ' || *line == '\t') line++;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
      line[--len] = '\0';
    char *this_line = line;
    line = next;
    if (len == 0 || this_line[0] == '#') continue;

    char *saved = strdup(this_line);
    if (saved == NULL) abort();
    char *f[MAX_FIELDS];
    size_t nf = split(this_line, f);

    if (strcmp(f[0], "case") == 0) {
      if (in_case || nf != 2) {
        fprintf(stderr, "    cases.txt line %d: bad or nested case\n", lineno);
        file_problems++;
      }
      in_case = true;
      snprintf(case_name, sizeof case_name, "vectors/%s", nf > 1 ? f[1] : "?");
      char file_name[320];
      snprintf(file_name, sizeof file_name, "%d-%s.ledger", cases, nf > 1 ? f[1] : "case");
      h_path(case_path, sizeof case_path, file_name);
      h_case_begin();
      w = NULL;
      if (!OK(revledger_open_writer(case_path, 3600, &w))) w = NULL;
      free(saved);
    } else if (!in_case) {
      fprintf(stderr, "    cases.txt line %d: `%s` outside a case\n", lineno, f[0]);
      file_problems++;
      free(saved);
    } else if (strcmp(f[0], "rule") == 0 || strcmp(f[0], "rule-error") == 0) {
      if (w != NULL) run_rule(w, f, nf, lineno, "writer");
      free(saved);
    } else if (strcmp(f[0], "check") == 0 || strcmp(f[0], "check-error") == 0) {
      if (w != NULL) run_check(w, f, nf, lineno, "writer");
      if (n_checks == cap_checks) {
        cap_checks = cap_checks == 0 ? 16 : cap_checks * 2;
        checks = realloc(checks, cap_checks * sizeof *checks);
        if (checks == NULL) abort();
      }
      checks[n_checks].text = saved;
      checks[n_checks].lineno = lineno;
      n_checks++;
    } else if (strcmp(f[0], "end") == 0) {
      /* A reader opened while the writer is open, then a fresh one after it closed. */
      revledger *before_close = NULL, *after_close = NULL;
      if (!OK(revledger_open_reader(case_path, &before_close))) before_close = NULL;
      revledger_close(w);
      w = NULL;
      if (!OK(revledger_open_reader(case_path, &after_close))) after_close = NULL;
      if (before_close != NULL) rerun_checks(before_close, checks, n_checks, "reader (open)");
      if (after_close != NULL) rerun_checks(after_close, checks, n_checks, "reader (reopened)");
      revledger_close(before_close);
      revledger_close(after_close);
      for (size_t i = 0; i < n_checks; i++) free(checks[i].text);
      n_checks = 0;
      h_case_end(case_name);
      cases++;
      in_case = false;
      free(saved);
    } else {
      FAIL_AT(lineno, "unknown statement `%s`", f[0]);
      free(saved);
    }
  }
  if (in_case) {
    fprintf(stderr, "    cases.txt: the last case has no `end`\n");
    file_problems++;
    revledger_close(w);
    h_case_end(case_name);
  }
  for (size_t i = 0; i < n_checks; i++) free(checks[i].text);
  free(checks);
  free(text);
  h_dir_remove();

  /* One more test case: the file as a whole ran. */
  h_case_begin();
  EXPECT(file_problems == 0);
  EXPECT(cases >= 15);
  h_case_end("vectors/whole-file");
  printf("     (%d vector cases from %s)\n", cases, cases_path);
  return h_finish();
}
