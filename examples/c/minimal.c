/* revledger from C, start to finish: the permission system records "super_admin
 * changed at T" through a writer; a gateway checks tokens through a reader.
 *
 * Build (after `cargo build --release --lib` at the repository root):
 *   cc -std=c11 -Iinclude examples/c/minimal.c target/release/librevledger.a \
 *      -lpthread -ldl -lm -o minimal
 *   ./minimal /tmp/acme.ledger
 */
#include "revledger.h"

#include <stdio.h>
#include <string.h>

static revledger_bytes bytes(const char *s) {
  revledger_bytes b = {(const uint8_t *)s, strlen(s)};
  return b;
}

static int fail(const char *what, revledger_status status) {
  fprintf(stderr, "%s: %s: %s\n", what, revledger_status_name(status), revledger_last_error());
  return 1;
}

static const char *scope_name(revledger_scope scope) {
  static const char *const names[] = {"global", "tenant",  "subject", "role",
                                      "client", "session", "token"};
  return (unsigned)scope < 7 ? names[scope] : "?";
}

/* Checks one token and prints the verdict, as a gateway would decide 200 or 401. */
static int check(const revledger *reader, const char *subject, const char *role, int64_t iat) {
  revledger_bytes roles[1] = {bytes(role)};
  revledger_token token = {0};
  token.tenant = bytes("acme");
  token.subject = bytes(subject);
  token.roles = roles;
  token.roles_len = 1;
  token.issued_at = iat;

  revledger_verdict verdict;
  revledger_status status = revledger_check(reader, &token, &verdict);
  if (status != REVLEDGER_OK) return fail("check", status); /* fail closed: not "valid" */
  if (verdict.revoked)
    printf("%s: revoked (%s changed at %lld)\n", subject, scope_name(verdict.scope),
           (long long)verdict.cutoff);
  else
    printf("%s: valid\n", subject);
  return 0;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "revledger-example.ledger";
  revledger *writer = NULL, *reader = NULL;
  revledger_status status;

  /* The permission system: one writer per ledger; tokens live at most an hour. */
  status = revledger_open_writer(path, 3600, &writer);
  if (status != REVLEDGER_OK) return fail("open_writer", status);

  /* super_admin's permissions changed at t=1700000000: its tokens issued before go. */
  status = revledger_revoke(writer, REVLEDGER_SCOPE_ROLE, bytes("acme"), bytes("super_admin"),
                            1700000000);
  if (status == REVLEDGER_OK) status = revledger_sync(writer); /* durable too */
  if (status != REVLEDGER_OK) {
    revledger_close(writer);
    return fail("revoke", status);
  }

  /* A gateway, in this process or any other on the host. */
  status = revledger_open_reader(path, &reader);
  if (status != REVLEDGER_OK) {
    revledger_close(writer);
    return fail("open_reader", status);
  }

  int failed = check(reader, "john", "super_admin", 1699999000) ||
               check(reader, "mike", "super_admin", 1699999999) ||
               check(reader, "bruce", "billing", 1699999000) ||
               check(reader, "john", "super_admin", 1700000000); /* refreshed token */

  revledger_close(reader);
  revledger_close(writer);
  return failed;
}
