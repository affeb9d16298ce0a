
/*
 * ngx_http_revledger_module: rejects JWT access tokens revoked in a revledger ledger.
 *
 * A deny layer, not authentication: it decodes the token's payload without verifying
 * its signature, so it must sit behind the module that verifies it (auth_request,
 * auth_jwt, access_by_lua...). It never grants access on its own: a token it finds
 * valid goes on to the other access checks. Directives and behaviour: DESIGN.md §8 and
 * bindings/nginx/README.md.
 *
 * Memory: everything of nginx's is taken from the cycle's or the request's pool. The
 * only other allocations are the library's own handles: the compiled claim mappings
 * (freed by a cleanup of the configuration's pool) and each worker's readers (opened in
 * init_process, closed in exit_process).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <revledger.h>


#define NGX_HTTP_REVLEDGER_OFF          -2  /* NGX_CONF_UNSET is -1 */

#define NGX_HTTP_REVLEDGER_FAIL_CLOSED  0
#define NGX_HTTP_REVLEDGER_FAIL_OPEN    1

/* longest error_description taken from a library message */
#define NGX_HTTP_REVLEDGER_MAX_WHY      256


/* one ledger file; every worker holds its own reader of it */
typedef struct {
    ngx_str_t                  path;       /* full name, NUL-terminated */
    revledger                 *reader;     /* this worker's; NULL: not open */
    time_t                     retry;      /* no reopening before this second */
    time_t                     verified;   /* the second the path was last verified */
} ngx_http_revledger_ledger_t;


typedef struct {
    ngx_array_t                ledgers;    /* of ngx_http_revledger_ledger_t */
    revledger_claims          *generic;    /* the default mapping, compiled once */
} ngx_http_revledger_main_conf_t;


typedef struct {
    ngx_int_t                  ledger;     /* index in ledgers, or OFF */
    revledger_claims          *claims;
    ngx_http_complex_value_t  *token;      /* NULL: the Authorization bearer token */
    ngx_uint_t                 fail;
} ngx_http_revledger_loc_conf_t;


/*
 * What the access phase decided, for $revledger_verdict and $revledger_scope. Allocated
 * as a pool cleanup's data, as ngx_http_realip_module keeps its context: an internal
 * redirect (error_page 401, for one) zeroes every module's context, and the log and
 * the error page's headers still ask for the variables.
 */
typedef struct {
    ngx_str_t                  verdict;
    ngx_str_t                  scope;
} ngx_http_revledger_ctx_t;


static ngx_int_t ngx_http_revledger_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_revledger_get_token(ngx_http_request_t *r,
    ngx_http_revledger_loc_conf_t *rlcf, ngx_str_t *jwt);
static revledger_status ngx_http_revledger_check(ngx_http_request_t *r,
    ngx_http_revledger_ledger_t *ledger, const revledger_claims *claims,
    ngx_str_t *jwt, revledger_verdict *verdict);
static ngx_int_t ngx_http_revledger_open(ngx_http_revledger_ledger_t *ledger,
    ngx_log_t *log);
static ngx_int_t ngx_http_revledger_reject(ngx_http_request_t *r,
    u_char *why, size_t len);
static ngx_http_revledger_ctx_t *ngx_http_revledger_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_revledger_ctx_cleanup(void *data);
static ngx_int_t ngx_http_revledger_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_revledger_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_revledger_init(ngx_conf_t *cf);
static void *ngx_http_revledger_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_revledger_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_revledger_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_revledger(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_revledger_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_revledger_claims(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static revledger_claims *ngx_http_revledger_compile(ngx_conf_t *cf,
    ngx_str_t *spec);
static void ngx_http_revledger_free_claims(void *data);
static ngx_int_t ngx_http_revledger_init_process(ngx_cycle_t *cycle);
static void ngx_http_revledger_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_revledger_fail[] = {
    { ngx_string("closed"), NGX_HTTP_REVLEDGER_FAIL_CLOSED },
    { ngx_string("open"), NGX_HTTP_REVLEDGER_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_revledger_commands[] = {

    { ngx_string("revledger"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_revledger,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("revledger_claims"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_revledger_claims,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("revledger_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_revledger_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_revledger_loc_conf_t, token),
      NULL },

    { ngx_string("revledger_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_revledger_loc_conf_t, fail),
      &ngx_http_revledger_fail },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_revledger_module_ctx = {
    ngx_http_revledger_add_variables,      /* preconfiguration */
    ngx_http_revledger_init,               /* postconfiguration */

    ngx_http_revledger_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_revledger_create_loc_conf,    /* create location configuration */
    ngx_http_revledger_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_revledger_module = {
    NGX_MODULE_V1,
    &ngx_http_revledger_module_ctx,        /* module context */
    ngx_http_revledger_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_revledger_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_revledger_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_revledger_vars[] = {

    { ngx_string("revledger_verdict"), NULL, ngx_http_revledger_variable,
      offsetof(ngx_http_revledger_ctx_t, verdict), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("revledger_scope"), NULL, ngx_http_revledger_variable,
      offsetof(ngx_http_revledger_ctx_t, scope), NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* names as the library spells them (Scope::name), indexed by revledger_scope */
static ngx_str_t  ngx_http_revledger_scopes[] = {
    ngx_string("global"),
    ngx_string("tenant"),
    ngx_string("subject"),
    ngx_string("role"),
    ngx_string("client"),
    ngx_string("session"),
    ngx_string("token")
};

static ngx_str_t  ngx_http_revledger_valid = ngx_string("valid");
static ngx_str_t  ngx_http_revledger_revoked = ngx_string("revoked");
static ngx_str_t  ngx_http_revledger_error = ngx_string("error");


static ngx_int_t
ngx_http_revledger_handler(ngx_http_request_t *r)
{
    u_char                          *why;
    size_t                           len;
    ngx_str_t                        jwt, *scope;
    revledger_status                 status;
    revledger_verdict                verdict;
    ngx_pool_cleanup_t              *cln;
    ngx_http_revledger_ctx_t        *ctx;
    ngx_http_revledger_ledger_t     *ledger;
    ngx_http_revledger_loc_conf_t   *rlcf;
    ngx_http_revledger_main_conf_t  *rmcf;

    if (r != r->main) {
        /* subrequests (auth_request's among them) skip the checks, as in the access phase */
        return NGX_DECLINED;
    }

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_revledger_module);

    if (rlcf->ledger == NGX_HTTP_REVLEDGER_OFF) {
        return NGX_DECLINED;
    }

    if (ngx_http_revledger_get_token(r, rlcf, &jwt) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (jwt.len == 0) {
        /* no token: authentication is another module's job */
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_revledger_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_revledger_ctx_t));
    cln->handler = ngx_http_revledger_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_revledger_module);

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_revledger_module);
    ledger = (ngx_http_revledger_ledger_t *) rmcf->ledgers.elts + rlcf->ledger;

    status = ngx_http_revledger_check(r, ledger, rlcf->claims, &jwt, &verdict);

    if (status == REVLEDGER_OK && !verdict.revoked) {
        ctx->verdict = ngx_http_revledger_valid;

        /* NGX_DECLINED, not NGX_OK: under "satisfy any" NGX_OK would grant access */
        return NGX_DECLINED;
    }

    if (status == REVLEDGER_OK) {
        ctx->verdict = ngx_http_revledger_revoked;

        if ((ngx_uint_t) verdict.scope
            >= sizeof(ngx_http_revledger_scopes) / sizeof(ngx_str_t))
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "revledger: unknown scope %d in a verdict",
                          (int) verdict.scope);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        scope = &ngx_http_revledger_scopes[verdict.scope];
        ctx->scope = *scope;

        len = sizeof("token revoked: ") - 1 + scope->len
              + sizeof(" permissions changed at ") - 1 + NGX_INT64_LEN;

        why = ngx_pnalloc(r->pool, len);
        if (why == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (verdict.scope == REVLEDGER_SCOPE_TOKEN) {
            len = ngx_sprintf(why, "token revoked") - why;

        } else {
            len = ngx_sprintf(why, "token revoked: %V permissions changed at %L",
                              scope, (int64_t) verdict.cutoff)
                  - why;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "revledger: %*s", len, why);

        return ngx_http_revledger_reject(r, why, len);
    }

    ctx->verdict = ngx_http_revledger_error;

    if (status == REVLEDGER_INVALID_ARGUMENT) {
        /* the token cannot be read (encoding, no iat, a claim of the wrong type) */
        why = (u_char *) revledger_last_error();
        len = ngx_strlen(why);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "revledger: unreadable token: %s", why);

        return ngx_http_revledger_reject(r, why, len);
    }

    /* the ledger cannot answer (logged by ngx_http_revledger_check) */

    if (rlcf->fail == NGX_HTTP_REVLEDGER_FAIL_OPEN) {
        return NGX_DECLINED;
    }

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_http_revledger_get_token(ngx_http_request_t *r,
    ngx_http_revledger_loc_conf_t *rlcf, ngx_str_t *jwt)
{
    u_char  *p, *last;

    if (rlcf->token) {
        return ngx_http_complex_value(r, rlcf->token, jwt);
    }

    ngx_str_null(jwt);

    if (r->headers_in.authorization == NULL) {
        return NGX_OK;
    }

    /*
     * Authorization: Bearer <token> (RFC 6750 §2.1; the scheme is case-insensitive). A tab
     * after the scheme is taken as a space: the module that verifies the token may
     * accept it, and a token this check did not see would pass unchecked.
     */

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    if (last - p < (ssize_t) sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer", sizeof("Bearer") - 1) != 0
        || (p[sizeof("Bearer") - 1] != ' ' && p[sizeof("Bearer") - 1] != '\t'))
    {
        return NGX_OK;
    }

    p += sizeof("Bearer ") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    jwt->data = p;
    jwt->len = last - p;

    return NGX_OK;
}


/*
 * Checks the token with this worker's reader of the ledger. When the ledger cannot
 * answer, the reader is replaced by a fresh one (the file may have been recreated or
 * repaired) and the failure logged, at most once a second per ledger and worker.
 */

static revledger_status
ngx_http_revledger_check(ngx_http_request_t *r,
    ngx_http_revledger_ledger_t *ledger, const revledger_claims *claims,
    ngx_str_t *jwt, revledger_verdict *verdict)
{
    time_t            now;
    revledger        *stale;
    revledger_bytes   bytes;
    revledger_status  status;

    bytes.ptr = jwt->data;
    bytes.len = jwt->len;

    now = ngx_time();

    if (ledger->reader != NULL) {

        /*
         * Once a second, is the file at the path still this reader's (not deleted,
         * not replaced by a new ledger)? The library looks when the kernel notices a
         * change there, else on one check in 4093 per thread; and only this reopens
         * the ledger now at the path, whose rules a lost handle never reads.
         */

        status = REVLEDGER_OK;

        if (ledger->verified != now) {
            ledger->verified = now;
            status = revledger_refresh(ledger->reader);
        }

        if (status == REVLEDGER_OK) {
            status = revledger_check_jwt(ledger->reader, claims, bytes, verdict);

            if (status == REVLEDGER_OK || status == REVLEDGER_INVALID_ARGUMENT) {
                return status;
            }
        }
    }

    if (now < ledger->retry) {
        return REVLEDGER_IO;
    }

    ledger->retry = now + 1;

    if (ledger->reader != NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "revledger: ledger \"%s\" cannot answer: %s; reopening",
                      ledger->path.data, revledger_last_error());
    }

    stale = ledger->reader;
    ledger->reader = NULL;

    if (ngx_http_revledger_open(ledger, r->connection->log) != NGX_OK) {
        ledger->reader = stale;
        return REVLEDGER_IO;
    }

    revledger_close(stale);

    return revledger_check_jwt(ledger->reader, claims, bytes, verdict);
}


static ngx_int_t
ngx_http_revledger_open(ngx_http_revledger_ledger_t *ledger, ngx_log_t *log)
{
    revledger         *reader;
    revledger_status   status;

    reader = NULL;
    status = revledger_open_reader((const char *) ledger->path.data, &reader);

    if (status != REVLEDGER_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "revledger: cannot open ledger \"%s\": %s (%s)",
                      ledger->path.data, revledger_last_error(),
                      revledger_status_name(status));
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "revledger: opened ledger \"%s\"", ledger->path.data);

    ledger->reader = reader;

    return NGX_OK;
}


/* 401 with WWW-Authenticate: Bearer error="invalid_token", error_description="..." */

static ngx_int_t
ngx_http_revledger_reject(ngx_http_request_t *r, u_char *why, size_t len)
{
    u_char           *value, *p;
    size_t            i;
    ngx_table_elt_t  *h;

    len = ngx_min(len, NGX_HTTP_REVLEDGER_MAX_WHY);

    /*
     * After "error_page 401 <uri>" the redirected request comes through here again
     * with the header of the first rejection still in headers_out: replace its value
     * rather than send the challenge twice.
     */

    h = r->headers_out.www_authenticate;

    if (h == NULL || h->hash == 0
        || h->value.len < sizeof("Bearer error=\"invalid_token\"") - 1
        || ngx_strncmp(h->value.data, "Bearer error=\"invalid_token\"",
                       sizeof("Bearer error=\"invalid_token\"") - 1) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    value = ngx_pnalloc(r->pool,
                        sizeof("Bearer error=\"invalid_token\", "
                               "error_description=\"\"") - 1 + len);
    if (value == NULL) {
        h->hash = 0;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(value, "Bearer error=\"invalid_token\", error_description=\"",
                   sizeof("Bearer error=\"invalid_token\", "
                          "error_description=\"") - 1);

    /* RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E */

    for (i = 0; i < len; i++) {
        *p++ = (why[i] < 0x20 || why[i] > 0x7e || why[i] == '"'
                || why[i] == '\\') ? '?' : why[i];
    }

    *p++ = '"';

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = value;
    h->value.len = p - value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    r->headers_out.www_authenticate = h;

    return NGX_HTTP_UNAUTHORIZED;
}


/* the request's context, also after an internal redirect zeroed the pointer to it */

static ngx_http_revledger_ctx_t *
ngx_http_revledger_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_revledger_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_revledger_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        /* the newest first: a redirected request checked again has a newer one */
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_revledger_ctx_cleanup) {
                ctx = cln->data;
                break;
            }
        }
    }

    return ctx;
}


/* only marks the context among the pool's cleanups: nothing to release */

static void
ngx_http_revledger_ctx_cleanup(void *data)
{
}


static ngx_int_t
ngx_http_revledger_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_revledger_ctx_t  *ctx;

    ctx = ngx_http_revledger_get_ctx(r);

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (ctx == NULL) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    v->len = s->len;
    v->data = s->len ? s->data : (u_char *) "";

    return NGX_OK;
}


static ngx_int_t
ngx_http_revledger_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_revledger_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_revledger_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_revledger_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_revledger_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->ledgers, cf->pool, 1,
                       sizeof(ngx_http_revledger_ledger_t))
        != NGX_OK)
    {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->generic = NULL;
     */

    return rmcf;
}


static void *
ngx_http_revledger_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_revledger_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_revledger_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->ledger = NGX_CONF_UNSET;
    conf->claims = NGX_CONF_UNSET_PTR;
    conf->token = NGX_CONF_UNSET_PTR;
    conf->fail = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_revledger_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_revledger_loc_conf_t *prev = parent;
    ngx_http_revledger_loc_conf_t *conf = child;

    ngx_str_t                        generic = ngx_string("generic");
    ngx_http_revledger_main_conf_t  *rmcf;

    ngx_conf_merge_value(conf->ledger, prev->ledger, NGX_HTTP_REVLEDGER_OFF);
    ngx_conf_merge_ptr_value(conf->claims, prev->claims, NULL);
    ngx_conf_merge_ptr_value(conf->token, prev->token, NULL);
    ngx_conf_merge_uint_value(conf->fail, prev->fail,
                              NGX_HTTP_REVLEDGER_FAIL_CLOSED);

    if (conf->claims == NULL && conf->ledger != NGX_HTTP_REVLEDGER_OFF) {
        rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_revledger_module);

        if (rmcf->generic == NULL) {
            rmcf->generic = ngx_http_revledger_compile(cf, &generic);
            if (rmcf->generic == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        conf->claims = rmcf->generic;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_revledger_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt             *h;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_revledger_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_revledger_module);

    if (rmcf->ledgers.nelts == 0) {
        /* no "revledger <path>" anywhere: requests need not pass through here */
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * After the whole access phase, not in it: ngx_http_lua_module moves its
     * access_by_lua* handler to the end of the access phase at its first request
     * (access_by_lua_no_postpone off, the default), so a handler placed "last" in the
     * access phase at configuration time ends up before it, and would decode and
     * answer tokens the authenticating Lua code has not verified yet. The precontent
     * phase runs after every access check (and post-access); the phase engine runs
     * its handlers last-registered first, so this one also precedes try_files/mirror.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_revledger_handler;

    return NGX_OK;
}


static char *
ngx_http_revledger(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_revledger_loc_conf_t *rlcf = conf;

    ngx_str_t                       *value, path;
    ngx_uint_t                       i;
    ngx_http_revledger_ledger_t     *ledger;
    ngx_http_revledger_main_conf_t  *rmcf;

    if (rlcf->ledger != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->ledger = NGX_HTTP_REVLEDGER_OFF;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a ledger path or \"off\"";
    }

    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* one reader per distinct path and worker, whatever the locations using it */

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_revledger_module);
    ledger = rmcf->ledgers.elts;

    for (i = 0; i < rmcf->ledgers.nelts; i++) {
        if (ledger[i].path.len == path.len
            && ngx_strncmp(ledger[i].path.data, path.data, path.len) == 0)
        {
            rlcf->ledger = i;
            return NGX_CONF_OK;
        }
    }

    ledger = ngx_array_push(&rmcf->ledgers);
    if (ledger == NULL) {
        return NGX_CONF_ERROR;
    }

    ledger->path.data = ngx_pnalloc(cf->pool, path.len + 1);
    if (ledger->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(ledger->path.data, path.data, path.len + 1);
    ledger->path.len = path.len;
    ledger->reader = NULL;
    ledger->retry = 0;
    ledger->verified = 0;

    rlcf->ledger = rmcf->ledgers.nelts - 1;

    return NGX_CONF_OK;
}


/* an empty value would read as "no token" on every request: checking silently off */

static char *
ngx_http_revledger_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a value that names the token, e.g. $cookie_at";
    }

    return ngx_http_set_complex_value_slot(cf, cmd, conf);
}


static char *
ngx_http_revledger_claims(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_revledger_loc_conf_t *rlcf = conf;

    ngx_str_t  *value;

    if (rlcf->claims != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rlcf->claims = ngx_http_revledger_compile(cf, &value[1]);
    if (rlcf->claims == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* compiles a claim mapping, freed with the configuration's pool */

static revledger_claims *
ngx_http_revledger_compile(ngx_conf_t *cf, ngx_str_t *spec)
{
    u_char              *name;
    revledger_claims    *claims;
    revledger_status     status;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    name = ngx_pnalloc(cf->pool, spec->len + 1);
    if (name == NULL) {
        return NULL;
    }

    ngx_cpystrn(name, spec->data, spec->len + 1);

    claims = NULL;
    status = revledger_claims_new((const char *) name, &claims);

    if (status != REVLEDGER_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid claim mapping \"%V\": %s", spec,
                           revledger_last_error());
        return NULL;
    }

    cln->handler = ngx_http_revledger_free_claims;
    cln->data = claims;

    return claims;
}


static void
ngx_http_revledger_free_claims(void *data)
{
    revledger_claims_free(data);
}


static ngx_int_t
ngx_http_revledger_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i;
    ngx_http_revledger_ledger_t     *ledger;
    ngx_http_revledger_main_conf_t  *rmcf;

    /* workers only (not the cache manager and loader); they run as the "user" */

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_revledger_module);
    if (rmcf == NULL) {
        return NGX_OK;
    }

    ledger = rmcf->ledgers.elts;

    for (i = 0; i < rmcf->ledgers.nelts; i++) {
        /* a failure is logged; requests retry, answering 503 meanwhile */
        (void) ngx_http_revledger_open(&ledger[i], cycle->log);
    }

    return NGX_OK;
}


static void
ngx_http_revledger_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i;
    ngx_http_revledger_ledger_t     *ledger;
    ngx_http_revledger_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_revledger_module);
    if (rmcf == NULL) {
        return;
    }

    ledger = rmcf->ledgers.elts;

    for (i = 0; i < rmcf->ledgers.nelts; i++) {
        revledger_close(ledger[i].reader);
        ledger[i].reader = NULL;
    }
}
