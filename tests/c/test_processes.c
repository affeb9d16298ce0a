/* Several processes on one ledger, through fork(): a reader sees another process's
 * commits on its next check, with the same handle, no reopen, no polling, no sleep.
 * Processes synchronise with waitpid() and pipes only.
 *
 * Children are forked before the handles they do not need are opened, so that they
 * inherit none (one test inherits a reader on purpose and closes it): a child that
 * exits with a ledger still mapped makes valgrind's leak scan crawl through the 1 GiB
 * address range the library reserves per handle. */
#define _XOPEN_SOURCE 700
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

/* Child exit codes: 0 = fine; anything else names the step that failed. */
static void child_exit(int code) {
  fflush(NULL);
  _exit(code);
}

/* A child process and the two pipes to talk with it. */
typedef struct {
  pid_t pid;
  int to_child, from_child;  /* the parent's ends */
  int from_parent, to_parent; /* the child's ends */
} child;

static bool spawn(child *c) {
  int down[2], up[2];
  if (pipe(down) != 0) return false;
  if (pipe(up) != 0) {
    close(down[0]);
    close(down[1]);
    return false;
  }
  fflush(NULL); /* nothing buffered is written twice */
  c->pid = fork();
  if (c->pid < 0) return false;
  if (c->pid == 0) {
    close(down[1]);
    close(up[0]);
    c->from_parent = down[0];
    c->to_parent = up[1];
    c->to_child = c->from_child = -1;
  } else {
    close(down[0]);
    close(up[1]);
    c->to_child = down[1];
    c->from_child = up[0];
    c->from_parent = c->to_parent = -1;
  }
  return true;
}

static bool write_byte(int fd, char c) {
  ssize_t n;
  do {
    n = write(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

/* Blocks until one byte arrives; false at end of file (the other side is gone). */
static bool read_byte(int fd) {
  char c;
  ssize_t n;
  do {
    n = read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

/* Parent side: closes the pipes, waits for the child, tells whether it exited with 0. */
static bool child_succeeded(child *c) {
  close(c->to_child);
  close(c->from_child);
  int status = 0;
  pid_t got;
  do {
    got = waitpid(c->pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  if (got != c->pid) {
    perror("waitpid");
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFEXITED(status))
    fprintf(stderr, "    child exited with %d (its failing step)\n", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    fprintf(stderr, "    child killed by signal %d\n", WTERMSIG(status));
  return false;
}

static bool create_ledger(const char *path) {
  revledger *w = NULL;
  if (!OK(revledger_open_writer(path, 3600, &w))) return false;
  revledger_close(w);
  return true;
}

static bool verdict_is(const revledger *h, const revledger_token *t, bool revoked,
                       revledger_scope scope, int64_t cutoff) {
  revledger_verdict v;
  if (revledger_check(h, t, &v) != REVLEDGER_OK) return false;
  if (v.revoked != revoked) return false;
  return !revoked || (v.scope == scope && v.cutoff == cutoff);
}

/* The parent opens a reader BEFORE the child revokes; the child opens the writer,
 * revokes, closes and exits; the parent, after waitpid, checks with the same reader
 * handle and sees the revocation. */
static void reader_sees_a_child_writers_commit_without_reopening(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  REQUIRE(create_ledger(path));
  child c;
  REQUIRE(spawn(&c));
  if (c.pid == 0) {
    if (!read_byte(c.from_parent)) child_exit(9); /* the parent's reader is open */
    revledger *w = NULL;
    if (revledger_open_writer(path, 0, &w) != REVLEDGER_OK) child_exit(10);
    if (revledger_revoke(w, REVLEDGER_SCOPE_ROLE, B("acme"), B("super_admin"), 2000) !=
        REVLEDGER_OK)
      child_exit(11);
    revledger_close(w);
    child_exit(0);
  }

  revledger *r = NULL;
  EXPECT(OK(revledger_open_reader(path, &r)));
  const char *roles[] = {"super_admin", NULL};
  revledger_bytes rb[2];
  revledger_token john = tok("acme", "john", rb, roles, NULL, NULL, NULL, 1500);
  revledger_token bruce = tok("acme", "bruce", NULL, NULL, NULL, NULL, NULL, 1500);
  EXPECT_VALID(r, &john);
  EXPECT_VALID(r, &bruce);
  EXPECT(write_byte(c.to_child, 'g'));
  EXPECT(child_succeeded(&c));

  /* Same handle, no reopen, no refresh call: the next check sees it. */
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_ROLE, 2000);
  EXPECT_VALID(r, &bruce);
  revledger_close(r);
}

/* The child keeps its writer open and revokes one subject at a time; after each revoke
 * returns it tells the parent and waits for the parent's answer. The parent's reader
 * must see exactly the subjects revoked so far: a committed record is visible to
 * another process before any sync or close. */
static void reader_follows_a_live_writer_in_another_process(void) {
  enum { ROUNDS = 25 };
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  REQUIRE(create_ledger(path));
  child c;
  REQUIRE(spawn(&c));
  if (c.pid == 0) {
    if (!read_byte(c.from_parent)) child_exit(9);
    revledger *w = NULL;
    if (revledger_open_writer(path, 0, &w) != REVLEDGER_OK) child_exit(10);
    char name[32];
    for (int i = 0; i < ROUNDS; i++) {
      snprintf(name, sizeof name, "user-%d", i);
      if (revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B(name), 1000 + i) !=
          REVLEDGER_OK)
        child_exit(11);
      if (!write_byte(c.to_parent, 'r') || !read_byte(c.from_parent)) child_exit(12);
    }
    revledger_close(w);
    child_exit(0);
  }

  revledger *r = NULL;
  EXPECT(OK(revledger_open_reader(path, &r)));
  EXPECT(write_byte(c.to_child, 'g'));
  char name[32];
  for (int i = 0; i < ROUNDS; i++) {
    if (!read_byte(c.from_child)) {
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
    EXPECT(write_byte(c.to_child, 'k'));
  }
  EXPECT(child_succeeded(&c));

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

/* The other direction: the parent holds the writer; the child opens its own reader,
 * sees what was there, cannot become a second writer, and sees what the parent revokes
 * next with the same handle. Once the parent closes, the child can take the writer. */
static void child_reader_follows_the_parents_writer_and_lock(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  child c;
  REQUIRE(spawn(&c));
  if (c.pid == 0) {
    if (!read_byte(c.from_parent)) child_exit(19); /* the parent's writer is open */
    revledger *second = NULL;
    if (revledger_open_writer(path, 0, &second) != REVLEDGER_LOCKED) child_exit(20);
    if (revledger_last_error()[0] == '\0') child_exit(21);
    revledger *r = NULL;
    if (revledger_open_reader(path, &r) != REVLEDGER_OK) child_exit(22);
    revledger_token g = tok("globex", "x", NULL, NULL, NULL, NULL, NULL, 2999);
    if (!verdict_is(r, &g, true, REVLEDGER_SCOPE_TENANT, 3000)) child_exit(23);
    revledger_token s = tok("acme", "x", NULL, NULL, NULL, "sid-7", NULL, 100);
    if (!verdict_is(r, &s, false, REVLEDGER_SCOPE_GLOBAL, 0)) child_exit(24);
    if (!write_byte(c.to_parent, 'c') || !read_byte(c.from_parent)) child_exit(25);
    if (!verdict_is(r, &s, true, REVLEDGER_SCOPE_SESSION, 200)) child_exit(26);
    if (!write_byte(c.to_parent, 'c') || !read_byte(c.from_parent)) child_exit(27);
    /* The parent closed its writer: the lock is free. */
    if (revledger_open_writer(path, 0, &second) != REVLEDGER_OK) child_exit(28);
    if (revledger_revoke(second, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("late"), 300) !=
        REVLEDGER_OK)
      child_exit(29);
    revledger_close(second);
    revledger_close(r);
    child_exit(0);
  }

  revledger *w = NULL;
  EXPECT(OK(revledger_open_writer(path, 3600, &w)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_TENANT, B("globex"), NONE, 3000)));
  EXPECT(write_byte(c.to_child, 'w'));
  EXPECT(read_byte(c.from_child));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SESSION, B("acme"), B("sid-7"), 200)));
  EXPECT(write_byte(c.to_child, 'p'));
  EXPECT(read_byte(c.from_child));
  revledger_close(w);
  EXPECT(write_byte(c.to_child, 'x'));
  EXPECT(child_succeeded(&c));

  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_token late = tok("acme", "late", NULL, NULL, NULL, NULL, NULL, 299);
  EXPECT_REVOKED(r, &late, REVLEDGER_SCOPE_SUBJECT, 300);
  revledger_close(r);
}

/* A process with a reader open forks; the child closes its inherited copy and opens
 * handles of its own (DESIGN.md §3: a process may fork and open new handles in the
 * child). The parent's reader is not disturbed by the child's close. */
static void child_closes_an_inherited_reader_and_opens_its_own(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 3600, &w)));
  EXPECT(OK(revledger_revoke(w, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("john"), 1000)));
  revledger_close(w);
  revledger *r = NULL;
  REQUIRE(OK(revledger_open_reader(path, &r)));
  revledger_token john = tok("acme", "john", NULL, NULL, NULL, NULL, NULL, 999);
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_SUBJECT, 1000);

  child c;
  REQUIRE(spawn(&c));
  if (c.pid == 0) {
    revledger_close(r); /* this process's copy */
    revledger *mine = NULL;
    if (revledger_open_writer(path, 0, &mine) != REVLEDGER_OK) child_exit(40);
    if (!verdict_is(mine, &john, true, REVLEDGER_SCOPE_SUBJECT, 1000)) child_exit(41);
    if (revledger_revoke(mine, REVLEDGER_SCOPE_SUBJECT, B("acme"), B("mike"), 2000) !=
        REVLEDGER_OK)
      child_exit(42);
    revledger_close(mine);
    child_exit(0);
  }
  EXPECT(child_succeeded(&c));
  revledger_token mike = tok("acme", "mike", NULL, NULL, NULL, NULL, NULL, 1999);
  EXPECT_REVOKED(r, &john, REVLEDGER_SCOPE_SUBJECT, 1000);
  EXPECT_REVOKED(r, &mike, REVLEDGER_SCOPE_SUBJECT, 2000);
  revledger_close(r);
}

/* A writer process killed with SIGKILL (no close, no sync, nothing run at exit) has
 * committed its records and, by dying, released its lock: the next writer opens and
 * sees them. (Being killed from outside also spares a leak checker, which cannot run in
 * the dying child, the scan of its mapping.) */
static void writer_killed_leaves_its_records_and_lock(void) {
  char path[256];
  h_path(path, sizeof path, "shared.ledger");
  child c;
  REQUIRE(spawn(&c));
  if (c.pid == 0) {
    revledger *w = NULL;
    if (revledger_open_writer(path, 3600, &w) != REVLEDGER_OK) child_exit(30);
    if (revledger_revoke(w, REVLEDGER_SCOPE_CLIENT, B("acme"), B("leaky-app"), 4000) !=
        REVLEDGER_OK)
      child_exit(31);
    /* Tell the parent, then wait for the end: the parent kills us meanwhile. */
    if (!write_byte(c.to_parent, 'r')) child_exit(32);
    read_byte(c.from_parent);
    child_exit(33);
  }
  EXPECT(read_byte(c.from_child));
  EXPECT(kill(c.pid, SIGKILL) == 0);
  close(c.to_child);
  close(c.from_child);
  int status = 0;
  pid_t got;
  do {
    got = waitpid(c.pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  REQUIRE(got == c.pid);
  if (WIFEXITED(status)) fprintf(stderr, "    child exited with %d\n", WEXITSTATUS(status));
  EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  revledger *w = NULL;
  REQUIRE(OK(revledger_open_writer(path, 0, &w)));
  revledger_token t = tok("acme", "x", NULL, NULL, "leaky-app", NULL, NULL, 3999);
  EXPECT_REVOKED(w, &t, REVLEDGER_SCOPE_CLIENT, 4000);
  revledger_close(w);
}

int main(void) {
  RUN(reader_sees_a_child_writers_commit_without_reopening);
  RUN(reader_follows_a_live_writer_in_another_process);
  RUN(child_reader_follows_the_parents_writer_and_lock);
  RUN(child_closes_an_inherited_reader_and_opens_its_own);
  RUN(writer_killed_leaves_its_records_and_lock);
  return h_finish();
}
