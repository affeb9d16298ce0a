/* The C side of benches/ffi.rs: `revledger_check` in a loop over the tokens the Rust
 * bench checks, against the same ledger file, timed the same way (this thread's CPU
 * time around rounds of checks), so that the C ABI's cost beside the Rust call is one
 * subtraction of two figures of one run.
 *
 *   check_loop LEDGER TOKENS ROUNDS CHECKS_PER_ROUND
 *
 * TOKENS is the file benches/ffi.rs writes (little-endian): "RLTOKEN1", u64 count, then
 * per token: i64 iat, u32 roles, u8 expected (0 valid, 1 revoked), then 5 + roles byte
 * strings (u32 length, bytes): tenant, subject, client, session, token id, roles.
 * The count is a power of two. Prints one line of JSON: the ns per check of each round.
 * Built by scripts/bench against target/release/librevledger.a. */
#define _POSIX_C_SOURCE 200809L
#include <revledger.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what) {
  fprintf(stderr, "check_loop: %s\n", what);
  exit(1);
}

static uint64_t get_u64(const uint8_t **p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)(*p)[i] << (8 * i);
  *p += 8;
  return v;
}

static uint32_t get_u32(const uint8_t **p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)(*p)[i] << (8 * i);
  *p += 4;
  return v;
}

static revledger_bytes get_bytes(const uint8_t **p) {
  revledger_bytes b;
  b.len = get_u32(p);
  b.ptr = *p;
  *p += b.len;
  return b;
}

static int64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The copy of benches/common's touch: reads every byte of the token that a check reads
 * from the token itself, so that a batch of BATCH timed checks starts with its tokens in
 * the cache (a gateway checks a token it has just parsed) and the index lines cold. The
 * Rust loop does the same, so the two loops differ only by the call. */
#define BATCH 512
static uint8_t xor_bytes(revledger_bytes b) {
  uint8_t x = 0;
  for (size_t i = 0; i < b.len; i++) x ^= b.ptr[i];
  return x;
}
static uint8_t touch(const revledger_token *t) {
  uint8_t x = xor_bytes(t->tenant) ^ xor_bytes(t->subject) ^ xor_bytes(t->client) ^
              xor_bytes(t->session) ^ xor_bytes(t->token_id) ^ (uint8_t)t->issued_at;
  for (size_t j = 0; j < t->roles_len; j++) x ^= xor_bytes(t->roles[j]);
  return x;
}

int main(int argc, char **argv) {
  if (argc != 5) die("usage: check_loop LEDGER TOKENS ROUNDS CHECKS_PER_ROUND");
  long rounds = atol(argv[3]);
  long per_round = atol(argv[4]);
  if (rounds <= 0 || per_round <= 0) die("ROUNDS and CHECKS_PER_ROUND must be positive");

  FILE *f = fopen(argv[2], "rb");
  if (!f) die("cannot open the tokens file");
  if (fseek(f, 0, SEEK_END) != 0) die("cannot size the tokens file");
  long size = ftell(f);
  rewind(f);
  uint8_t *data = malloc((size_t)size);
  if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) die("cannot read the tokens file");
  fclose(f);
  if (size < 16 || memcmp(data, "RLTOKEN1", 8) != 0) die("not a tokens file");
  const uint8_t *p = data + 8;
  uint64_t count = get_u64(&p);
  if (count == 0 || (count & (count - 1)) != 0) die("the token count must be a power of two");
  revledger_token *tokens = calloc(count, sizeof *tokens);
  bool *expect = calloc(count, sizeof *expect);
  if (!tokens || !expect) die("out of memory");
  for (uint64_t i = 0; i < count; i++) {
    int64_t iat = (int64_t)get_u64(&p);
    uint32_t roles = get_u32(&p);
    expect[i] = *p++ != 0;
    tokens[i].tenant = get_bytes(&p);
    tokens[i].subject = get_bytes(&p);
    tokens[i].client = get_bytes(&p);
    tokens[i].session = get_bytes(&p);
    tokens[i].token_id = get_bytes(&p);
    revledger_bytes *r = calloc(roles ? roles : 1, sizeof *r);
    if (!r) die("out of memory");
    for (uint32_t j = 0; j < roles; j++) r[j] = get_bytes(&p);
    tokens[i].roles = r;
    tokens[i].roles_len = roles;
    tokens[i].issued_at = iat;
    if (p > data + size) die("truncated tokens file");
  }

  revledger *ledger = NULL;
  if (revledger_open_reader(argv[1], &ledger) != REVLEDGER_OK) {
    fprintf(stderr, "check_loop: open: %s\n", revledger_last_error());
    return 1;
  }
  revledger_verdict v;
  for (uint64_t i = 0; i < count; i++) { /* the same answers as the Rust side, and warm */
    if (revledger_check(ledger, &tokens[i], &v) != REVLEDGER_OK) {
      fprintf(stderr, "check_loop: check: %s\n", revledger_last_error());
      return 1;
    }
    if (v.revoked != expect[i]) die("a verdict differs from the Rust bench's");
  }
  uint64_t mask = count - 1, at = 0, revoked = 0;
  printf("{\"ns_per_check\": [");
  long batches = (per_round + BATCH - 1) / BATCH;
  volatile uint8_t sink = 0;
  for (long r = 0; r < rounds; r++) {
    int64_t spent = 0;
    for (long b = 0; b < batches; b++) {
      uint8_t x = 0;
      for (uint64_t j = 1; j <= BATCH; j++) x ^= touch(&tokens[(at + j) & mask]);
      sink ^= x;
      int64_t start = thread_cpu_ns();
      for (int j = 0; j < BATCH; j++) {
        at = (at + 1) & mask;
        if (revledger_check(ledger, &tokens[at], &v) != REVLEDGER_OK) die("check failed");
        revoked += v.revoked;
      }
      spent += thread_cpu_ns() - start;
    }
    printf("%s%.3f", r ? ", " : "", (double)spent / (double)(batches * BATCH));
  }
  printf("], \"revoked\": %" PRIu64 "}\n", revoked);
  revledger_close(ledger);
  return 0;
}
