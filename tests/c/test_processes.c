/* Several processes on one ledger, through fork(): a reader sees another process's
 * commits on its next check, with the same handle, no reopen, no polling, no sleep.
 * Processes synchronise with waitpid() and pipes only. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <errno.h>
#include <sys/wait.h>

/* Child exit codes: 0 = fine; anything else names the step that failed. */
static void child_exit(int code) {
  fflush(NULL);
  _exit(code);
}

static pid_t fork_child(void) {
  fflush(NULL); /* nothing buffered is written twice */
  return fork();
}

/* Waits for `pid` and tells whether it exited with 0 (else prints how it ended). */
static bool child_succeeded(pid_t pid) {
  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  if (got != pid) {
    perror("waitpid");
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFEXITED(status))
    fprintf(stderr, "    child exited with %d\n", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    fprintf(stderr, "    child killed by signal %d\n", WTERMSIG(status));
  return false;
}

static bool write_byte(int fd, char c) {
  ssize_t n;
  do {
    n = write(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

/* Blocks until one byte arrives; false at end of file or on error. */
static bool read_byte(int fd, char *c) {
  ssize_t n;
  do {
    n = read(fd, c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

static bool create_ledger(const char *path) {
  revledger *w = NULL;
  if (!OK(revledger_open_writer(path, 3600, &w))) return false;
  revledger_close(w);
  return true;
}

/* The brief's scenario: the parent opens a reader BEFORE the child revokes; the child
 * opens the writer, revokes, closes and exits; the parent, after waitpid, checks with
 * the same reader handle and sees the revocation. */
static void reader_sees_a_child_writers_commit_without_reopening(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  REQUIRE(create_ledger(path));
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));

  const char *roles[] = {"super_admin", NULL};
  revledger_bytes rb[2];
  revledger_token john = tok("acme", "john", rb, roles, NULL, NULL, NULL, 1500);
  revledger_token bruce = tok("acme", "bruce", NULL, NULL, NULL, NULL, NULL, 1500);
  EXPECT_VALID(r, &john);
  EXPECT_VALID(r, &bruce);

  pid_t pid = fork_child();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    revledger *w = NULL;
    if (revledger_open_writer(path, 0, &w) != REVLEDGER_OK) child_exit(10);
    if (revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("super_admin"), 2000) !=
        REVLEDGER_OK)
      child_exit(11);
    revledger_close(w);
    child_exit(0);
  }
  REQUIRE(child_succeeded(pid));

  /* Same handle, no reopen, no refresh call: the next check sees it. */
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_ROLE, 2000);
  EXPECT_VALID(r, &bruce);
  revledger_close(r);
}

/* The child keeps its writer open and revokes one subject at a time; after each revoke
 * returns it tells the parent through a pipe and waits for the parent's answer. The
 * parent's reader (opened before the child existed) must see exactly the subjects
 * revoked so far: committed records are visible before any sync or close. */
static void reader_follows_a_live_writer_in_another_process(void) {
  enum { ROUNDS = 25 };
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  REQUIRE(create_ledger(path));
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));

  int to_parent[2], to_child[2];
  REQUIRE(pipe(to_parent) == 0);
  REQUIRE(pipe(to_child) == 0);
  pid_t pid = fork_child();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(to_parent[0]);
    close(to_child[1]);
    revledger *w = NULL;
    if (revledger_open_writer(path, 0, &w) != REVLEDGER_OK) child_exit(10);
    char name[32];
    for (int i = 0; i < ROUNDS; i++) {
      snprintf(name, sizeof name, "user-%d", i);
      if (revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(name), 1000 + i) !=
          REVLEDGER_OK)
        child_exit(11);
      char c;
      if (!write_byte(to_parent[1], 'r') || !read_byte(to_child[0], &c)) child_exit(12);
    }
    revledger_close(w);
    child_exit(0);
  }
  close(to_parent[1]);
  close(to_child[0]);

  char name[32];
  for (int i = 0; i < ROUNDS; i++) {
    char c;
    if (!read_byte(to_parent[0], &c)) {
      EXPECT(!"the child stopped before revoking everything");
      break;
    }
    snprintf(name, sizeof name, "user-%d", i);
    revledger_token t = tok("acme", name, NULL, NULL, NULL, NULL, NULL, 900);
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 1000 + i);
    /* The next one is not revoked yet: the child waits for us. */
    snprintf(name, sizeof name, "user-%d", i + 1);
    revledger_token next = tok("acme", name, NULL, NULL, NULL, NULL, NULL, 900);
    EXPECT_VALID(r, &next);
    EXPECT(write_byte(to_child[1], 'k'));
  }
  close(to_child[1]);
  close(to_parent[0]);
  EXPECT(child_succeeded(pid));

  /* Everything is still there, in this reader and in a fresh one. */
  revledger *r2 = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r2)));
  for (int i = 0; i < ROUNDS; i++) {
    snprintf(name, sizeof name, "user-%d", i);
    revledger_token t = tok("acme", name, NULL, NULL, NULL, NULL, NULL, 900);
    EXPECT_REVOKED(r, &t, REVLEDGER_SCOPE_SUBJECT, 1000 + i);
    EXPECT_REVOKED(r2, &t, REVLEDGER_SCOPE_SUBJECT, 1000 + i);
  }
  revledger_close(r2);
  revledger_close(r);
}

/* The other direction: the parent holds the writer; a forked child opens its own reader
 * (a process may fork and open new handles in the child), sees what was there, then
 * sees what the parent revokes next with the same handle. The child cannot become a
 * second writer while the parent holds the lock. */
static void child_reader_follows_the_parents_writer(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  REQUIRE(OK(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, B("globex"), NONE, 3000)));

  int to_parent[2], to_child[2];
  REQUIRE(pipe(to_parent) == 0);
  REQUIRE(pipe(to_child) == 0);
  pid_t pid = fork_child();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(to_parent[0]);
    close(to_child[1]);
    revledger *second = NULL;
    if (revledger_open_writer(path, 0, &second) != REVLEDGER_LOCKED) child_exit(20);
    revledger *r = NULL;
    if (revledger_open_reader(path, &r) != REVLEDGER_OK) child_exit(21);
    revledger_verdict v;
    revledger_token g = tok("globex", "x", NULL, NULL, NULL, NULL, NULL, 2999);
    if (revledger_check(r, &g, &v) != REVLEDGER_OK || !v.revoked ||
        v.scope != REVLEDGER_SCOPE_TENANT || v.cutoff != 3000)
      child_exit(22);
    revledger_token s = tok("acme", "sid-holder", NULL, NULL, NULL, "sid-7", NULL, 100);
    if (revledger_check(r, &s, &v) != REVLEDGER_OK || v.revoked) child_exit(23);
    char c;
    if (!write_byte(to_parent[1], 'c') || !read_byte(to_child[0], &c)) child_exit(24);
    if (revledger_check(r, &s, &v) != REVLEDGER_OK || !v.revoked ||
        v.scope != REVLEDGER_SCOPE_SESSION || v.cutoff != 200)
      child_exit(25);
    revledger_close(r);
    child_exit(0);
  }
  close(to_parent[1]);
  close(to_child[0]);
  char c;
  EXPECT(read_byte(to_parent[0], &c));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SESSION, B("acme"), B("sid-7"), 200)));
  EXPECT(write_byte(to_child[1], 'p'));
  close(to_child[1]);
  close(to_parent[0]);
  EXPECT(child_succeeded(pid));
  revledger_close(w);
}

/* A writer that exits without closing (as a crash would leave it) has committed its
 * records and released its lock: the next writer opens and sees them. */
static void writer_exiting_without_close_leaves_its_records(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  pid_t pid = fork_child();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    /* Kept in a global so that a leak checker counts the unclosed handle as reachable. */
    static revledger *w;
    if (revledger_open_writer(path, 3600, &w) != REVLEDGER_OK) child_exit(30);
    if (revledger_revoke(w, REVLEDGER_SCOPE_CLIENT, B("acme"), B("leaky-app"), 4000) !=
        REVLEDGER_OK)
      child_exit(31);
    _exit(0); /* no revledger_close, no revledger_sync */
  }
  REQUIRE(child_succeeded(pid));
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 0, &w)));
  revledger_token t = tok("acme", "x", NULL, NULL, "leaky-app", NULL, NULL, 3999);
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_CLIENT, 4000);
  revledger_close(w);
}

int main(void) {
  RUN(reader_sees_a_child_writers_commit_without_reopening);
  RUN(reader_follows_a_live_writer_in_another_process);
  RUN(child_reader_follows_the_parents_writer);
  RUN(writer_exiting_without_close_leaves_its_records);
  return h_finish();
}
